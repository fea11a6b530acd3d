"""Face finding: detector backends, landmark tracking, FFHQ alignment, the temporal filters they share."""
