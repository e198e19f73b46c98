-- A reservation's lines move into its row (`items`: "product:quantity" pairs, comma-separated,
-- product ids ascending), so ReserveStock writes its claim and its lines in one statement.
-- Rows written before keep their lines: they are copied over, then the old table goes.
-- A tombstone (released before it was ever reserved) has no lines: NULL.
ALTER TABLE stock_reservations ADD COLUMN items TEXT;
UPDATE stock_reservations SET items = (
    SELECT group_concat(product_id || ':' || quantity, ',')
    FROM (SELECT product_id, quantity FROM stock_reservation_items i
          WHERE i.reservation_id = stock_reservations.reservation_id
          ORDER BY product_id)
);
DROP TABLE stock_reservation_items;
