-- The events the image services record, one row per processed image.
-- Same table and columns as the original template; types tightened and
-- NOT NULL where the service always sends a value.
CREATE TABLE image_evts (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    event_ts    BIGINT          NOT NULL,
    op_type     VARCHAR(20)     NOT NULL,
    input_size  INT UNSIGNED    NOT NULL,
    PRIMARY KEY (id),
    KEY image_evts_op_type (op_type, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
