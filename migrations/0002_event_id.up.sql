-- Idempotent recording: the caller (grayscale, classify) names each event
-- with an id of its own (a UUIDv7), so a retried create_event finds the row
-- it already wrote instead of adding a second. NULL for rows recorded before
-- this migration and for callers that send no id (a unique key allows many NULLs).
ALTER TABLE image_evts
    ADD COLUMN event_id CHAR(36) NULL AFTER id,
    ADD UNIQUE KEY image_evts_event_id (event_id);
