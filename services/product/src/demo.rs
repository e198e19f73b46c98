//! The demo catalog loaded into an empty database (`catalog.seed_demo`, on by default):
//! 30 products in 5 categories, prices in cents.

use mall_types::Invalid;

use crate::domain::NewProduct;

/// `(name, description, price_cents, stock, categories)`.
const DEMO: [(&str, &str, i64, u32, &[&str]); 30] = [
    (
        "Notebook",
        "A5 dotted notebook, 192 pages, lay-flat binding.",
        1_299,
        200,
        &["Stationery"],
    ),
    (
        "Gel Pen Set",
        "Ten 0.5 mm gel pens in assorted colours.",
        899,
        300,
        &["Stationery"],
    ),
    (
        "Fountain Pen",
        "Steel nib fountain pen with a converter and two cartridges.",
        3_450,
        80,
        &["Stationery"],
    ),
    (
        "Sticky Notes",
        "Six pads of 76 x 76 mm sticky notes.",
        499,
        500,
        &["Stationery"],
    ),
    (
        "Desk Organizer",
        "Bamboo organizer with five compartments.",
        2_499,
        60,
        &["Stationery", "Home"],
    ),
    (
        "Mechanical Pencil",
        "0.5 mm mechanical pencil with a metal grip.",
        1_150,
        150,
        &["Stationery"],
    ),
    (
        "Wireless Earbuds",
        "Bluetooth 5.3 earbuds, 24 hours with the case.",
        5_999,
        120,
        &["Electronics"],
    ),
    (
        "USB-C Charger",
        "65 W GaN charger with two USB-C ports and one USB-A port.",
        3_999,
        200,
        &["Electronics"],
    ),
    (
        "Mechanical Keyboard",
        "Tenkeyless keyboard with hot-swappable brown switches.",
        8_950,
        40,
        &["Electronics"],
    ),
    (
        "Wireless Mouse",
        "Silent-click mouse with a 2.4 GHz receiver.",
        2_199,
        150,
        &["Electronics"],
    ),
    (
        "Power Bank",
        "20,000 mAh power bank with 22.5 W fast charging.",
        4_599,
        90,
        &["Electronics", "Outdoors"],
    ),
    (
        "Smart Watch",
        "Fitness watch with heart-rate and sleep tracking.",
        12_900,
        35,
        &["Electronics", "Sports"],
    ),
    (
        "Ceramic Mug",
        "350 ml stoneware mug, dishwasher safe.",
        1_499,
        250,
        &["Home"],
    ),
    (
        "Scented Candle",
        "Soy wax candle, cedar and vanilla, 40 hours.",
        1_899,
        120,
        &["Home"],
    ),
    (
        "Throw Blanket",
        "Knitted cotton throw, 130 x 170 cm.",
        4_999,
        45,
        &["Home"],
    ),
    (
        "Table Lamp",
        "Dimmable LED lamp with a linen shade.",
        3_799,
        50,
        &["Home", "Electronics"],
    ),
    (
        "Chef's Knife",
        "20 cm stainless steel chef's knife.",
        6_500,
        30,
        &["Home"],
    ),
    (
        "Plant Pot",
        "Terracotta pot with a saucer, 15 cm.",
        999,
        180,
        &["Home"],
    ),
    (
        "Yoga Mat",
        "6 mm non-slip yoga mat with a carry strap.",
        2_999,
        100,
        &["Sports"],
    ),
    (
        "Dumbbell Pair",
        "Two 5 kg neoprene dumbbells.",
        3_999,
        40,
        &["Sports"],
    ),
    (
        "Running Socks",
        "Three pairs of cushioned running socks.",
        1_599,
        220,
        &["Sports"],
    ),
    (
        "Jump Rope",
        "Adjustable speed rope with ball bearings.",
        1_299,
        140,
        &["Sports"],
    ),
    (
        "Water Bottle",
        "750 ml insulated steel bottle, cold for 24 hours.",
        2_499,
        160,
        &["Sports", "Outdoors"],
    ),
    (
        "Tennis Balls",
        "Tube of three pressurised tennis balls.",
        699,
        300,
        &["Sports"],
    ),
    (
        "Camping Lantern",
        "Rechargeable LED lantern, 300 lumens.",
        2_799,
        70,
        &["Outdoors", "Electronics"],
    ),
    (
        "Trail Backpack",
        "28 l backpack with a rain cover.",
        7_900,
        35,
        &["Outdoors"],
    ),
    (
        "Hammock",
        "Parachute-nylon hammock with tree straps.",
        3_499,
        55,
        &["Outdoors"],
    ),
    (
        "Pocket Knife",
        "Folding knife with seven tools.",
        2_999,
        65,
        &["Outdoors"],
    ),
    (
        "Sun Hat",
        "Wide-brim hat with UPF 50+ protection.",
        1_999,
        90,
        &["Outdoors"],
    ),
    (
        "Picnic Blanket",
        "Waterproof picnic blanket, 200 x 200 cm.",
        2_599,
        75,
        &["Outdoors", "Home"],
    ),
];

/// The demo products, ready to insert. They pass the same rules as `CreateProduct`; an entry
/// that did not would stop the service at start, naming the field.
pub fn products() -> Result<Vec<NewProduct>, Invalid> {
    DEMO.iter()
        .map(|(name, description, price_cents, stock, categories)| {
            let slug = name.to_lowercase().replace([' ', '\''], "-");
            let categories: Vec<String> = categories.iter().map(|c| (*c).to_string()).collect();
            NewProduct::parse(
                name,
                description,
                &format!("/static/image/{slug}.jpeg"),
                *price_cents,
                *stock,
                &categories,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_catalog_has_thirty_products_in_five_categories() {
        let products = super::products().unwrap();
        assert_eq!(products.len(), 30);
        let mut categories: Vec<String> = products
            .iter()
            .flat_map(|p| p.categories.iter().map(|c| c.name.to_string()))
            .collect();
        categories.sort();
        categories.dedup();
        assert_eq!(categories.len(), 5, "{categories:?}");
        assert!(products.iter().all(|p| p.price.get() > 0 && p.stock > 0));
        assert_eq!(products[0].picture.as_str(), "/static/image/notebook.jpeg");
    }
}
