CREATE TABLE counters (
    id BIGINT NOT NULL PRIMARY KEY,
    v  BIGINT NOT NULL
) ENGINE = InnoDB;
INSERT INTO counters (id, v) VALUES (1, 0), (2, 0);
