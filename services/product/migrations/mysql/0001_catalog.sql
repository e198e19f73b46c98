-- The product catalog: products, categories and stock reservations.
-- Money is integer cents, times are unix seconds, a deleted product keeps its row (deleted_at).
CREATE TABLE products (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(200)  NOT NULL,
    description TEXT          NOT NULL,
    picture     VARCHAR(1024) NOT NULL,
    price_cents BIGINT        NOT NULL,
    stock       BIGINT        NOT NULL,
    created_at  BIGINT        NOT NULL,
    updated_at  BIGINT        NOT NULL,
    deleted_at  BIGINT        NULL,
    CONSTRAINT products_price_not_negative CHECK (price_cents >= 0),
    CONSTRAINT products_stock_not_negative CHECK (stock >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE categories (
    id   BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(64) NOT NULL,
    UNIQUE KEY categories_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE product_categories (
    product_id  BIGINT NOT NULL,
    category_id BIGINT NOT NULL,
    PRIMARY KEY (product_id, category_id),
    KEY product_categories_by_category (category_id, product_id),
    CONSTRAINT product_categories_product FOREIGN KEY (product_id) REFERENCES products (id),
    CONSTRAINT product_categories_category FOREIGN KEY (category_id) REFERENCES categories (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per reservation id: what makes ReserveStock idempotent and ReleaseStock happen once.
-- Ids compare byte-wise (utf8mb4_bin): "A1" and "a1" are different reservations.
CREATE TABLE stock_reservations (
    reservation_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    status         VARCHAR(16)  NOT NULL,
    created_at     BIGINT       NOT NULL,
    released_at    BIGINT       NULL,
    CONSTRAINT stock_reservations_status CHECK (status IN ('reserved', 'released'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE stock_reservation_items (
    reservation_id VARCHAR(128) COLLATE utf8mb4_bin NOT NULL,
    product_id     BIGINT       NOT NULL,
    quantity       BIGINT       NOT NULL,
    PRIMARY KEY (reservation_id, product_id),
    CONSTRAINT stock_reservation_items_reservation FOREIGN KEY (reservation_id)
        REFERENCES stock_reservations (reservation_id),
    CONSTRAINT stock_reservation_items_quantity CHECK (quantity > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Markers such as 'demo_seeded', so concurrent instances seed the demo catalog once.
CREATE TABLE catalog_meta (
    name       VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
