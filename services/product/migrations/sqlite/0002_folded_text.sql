-- Matching by folded text: the service folds names in Rust (NFC, Unicode case folding; see
-- domain::fold) and stores the result beside the text; the database only compares bytes
-- (SQLite's BINARY collation), so no collation decides what "the same" category is.
-- Rows written before this migration get their folded forms from the service at start
-- (Catalog::backfill): SQL cannot fold like Rust. Until then they are NULL.
ALTER TABLE products ADD COLUMN name_fold TEXT;
ALTER TABLE products ADD COLUMN description_fold TEXT;

-- categories drops its NOCASE unique name (ASCII-only folding) for a unique folded key. SQLite
-- cannot drop a column constraint, so categories and the links to it are rebuilt: the new
-- tables are filled, the old ones dropped child first (no foreign key is ever left dangling),
-- and the new ones renamed (which also renames the link table's reference).
CREATE TABLE categories_v2 (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name     TEXT NOT NULL,
    name_key TEXT
);
INSERT INTO categories_v2 (id, name) SELECT id, name FROM categories;

CREATE TABLE product_categories_v2 (
    product_id  INTEGER NOT NULL REFERENCES products (id),
    category_id INTEGER NOT NULL REFERENCES categories_v2 (id),
    PRIMARY KEY (product_id, category_id)
);
INSERT INTO product_categories_v2 (product_id, category_id)
    SELECT product_id, category_id FROM product_categories;

DROP TABLE product_categories;
DROP TABLE categories;
ALTER TABLE categories_v2 RENAME TO categories;
ALTER TABLE product_categories_v2 RENAME TO product_categories;

-- Several NULL keys may coexist until the back-fill; a key is unique once set.
CREATE UNIQUE INDEX categories_by_key ON categories (name_key);
CREATE INDEX product_categories_by_category ON product_categories (category_id, product_id);
