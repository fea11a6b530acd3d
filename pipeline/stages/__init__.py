"""The data flow, one module per stage, in order: video_in -> detect_crop -> invert (codes) -> smooth
-> invert (features) -> generate -> paste -> video_out. Each stage is an iterator transform."""
