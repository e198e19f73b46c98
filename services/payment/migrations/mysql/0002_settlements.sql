-- How each order's payment was settled, one row per order: 'charged' (written with the payment,
-- in the same transaction) or 'voided' (checkout gave up on the order without a charge; a Charge
-- arriving later is refused). The primary key decides between a late Charge and the void, also
-- across instances.
CREATE TABLE order_settlements (
    order_id   VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    outcome    VARCHAR(16) NOT NULL,
    created_at BIGINT      NOT NULL,
    CONSTRAINT order_settlements_outcome CHECK (outcome IN ('charged', 'voided'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

INSERT INTO order_settlements (order_id, outcome, created_at)
    SELECT order_id, 'charged', created_at FROM payments;

-- When the reconciliation worker last found the payment's order settled (PAID by it, or
-- CANCELLED and the payment refunded); NULL while it still has to look.
ALTER TABLE payments ADD COLUMN reconciled_at BIGINT NULL;
CREATE INDEX payments_to_reconcile ON payments (reconciled_at, created_at);
