-- Matching by folded text: the service folds names in Rust (NFC, Unicode case folding; see
-- domain::fold) and stores the result beside the text; the database only compares bytes
-- (utf8mb4_bin), so utf8mb4_unicode_ci no longer decides what "the same" category is (it
-- made `Cafe` and `Café` collide on the unique name).
-- Rows written before this migration get their folded forms from the service at start
-- (Catalog::backfill): SQL cannot fold like Rust. Until then they are NULL.
-- Keys never end in a space (names are trimmed), so utf8mb4_bin's PAD SPACE cannot make two
-- different keys equal.
ALTER TABLE products
    ADD COLUMN name_fold        TEXT       COLLATE utf8mb4_bin NULL,
    ADD COLUMN description_fold MEDIUMTEXT COLLATE utf8mb4_bin NULL;

-- 256 = 4 x 64: no character folds to more than four (domain::MAX_FOLD_GROWTH).
ALTER TABLE categories
    DROP INDEX categories_name,
    ADD COLUMN name_key VARCHAR(256) COLLATE utf8mb4_bin NULL,
    ADD UNIQUE KEY categories_by_key (name_key);
