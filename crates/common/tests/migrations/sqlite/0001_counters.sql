CREATE TABLE counters (
    id INTEGER NOT NULL PRIMARY KEY,
    v  INTEGER NOT NULL
);
INSERT INTO counters (id, v) VALUES (1, 0), (2, 0);
