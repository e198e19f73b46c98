-- How the order is paid: 'credit_card' (checkout charges it) or 'alipay' (the buyer pays on
-- Alipay's page; the sweeper asks payment before cancelling it unpaid).
ALTER TABLE orders ADD COLUMN payment_method VARCHAR(16) NOT NULL DEFAULT 'credit_card';
ALTER TABLE orders ADD CONSTRAINT orders_payment_method CHECK (payment_method IN ('credit_card', 'alipay'));
