ALTER TABLE image_evts
    DROP KEY image_evts_event_id,
    DROP COLUMN event_id;
