-- A reservation's lines move into its row (`items`: "product:quantity" pairs, comma-separated,
-- product ids ascending), so ReserveStock writes its claim and its lines in one statement.
-- Rows written before keep their lines: they are copied over, then the old table goes.
-- A tombstone (released before it was ever reserved) has no lines: NULL.
SET SESSION group_concat_max_len = 1048576;
ALTER TABLE stock_reservations ADD COLUMN items TEXT NULL;
UPDATE stock_reservations r SET items = (
    SELECT GROUP_CONCAT(CONCAT(i.product_id, ':', i.quantity) ORDER BY i.product_id SEPARATOR ',')
    FROM stock_reservation_items i
    WHERE i.reservation_id = r.reservation_id
);
DROP TABLE stock_reservation_items;
