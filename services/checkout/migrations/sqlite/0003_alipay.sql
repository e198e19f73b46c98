-- An Alipay checkout's answer: the signed pay link it gave the client (replayed with the same
-- idempotency key). NULL for card checkouts.
ALTER TABLE sagas ADD COLUMN pay_url TEXT;
