"""The Webcam tab: its builder and handlers (``tab``), face tracking across frames, the live channel,
the results file, the number format it classifies in, and the live view's page side (``live_page``,
``webcam_live.js``)."""
