-- How each order's payment was settled, one row per order: 'charged' (written with the payment,
-- in the same transaction) or 'voided' (checkout gave up on the order without a charge; a Charge
-- arriving later is refused). The primary key decides between a late Charge and the void.
CREATE TABLE order_settlements (
    order_id   TEXT    NOT NULL PRIMARY KEY,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('charged', 'voided')),
    created_at INTEGER NOT NULL
);

INSERT INTO order_settlements (order_id, outcome, created_at)
    SELECT order_id, 'charged', created_at FROM payments;

-- When the reconciliation worker last found the payment's order settled (PAID by it, or
-- CANCELLED and the payment refunded); NULL while it still has to look.
ALTER TABLE payments ADD COLUMN reconciled_at INTEGER NULL;
CREATE INDEX payments_to_reconcile ON payments (reconciled_at, created_at);
