-- The W3C `traceparent` of the request that opened the saga (NULL when traces were not
-- exported), so the recovery worker's resumed saga links to the original trace.
ALTER TABLE sagas ADD COLUMN trace_parent VARCHAR(64) COLLATE utf8mb4_bin NULL;
