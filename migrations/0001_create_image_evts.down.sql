DROP TABLE image_evts;
