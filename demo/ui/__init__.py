"""UI pieces more than one tab uses: the explain panel and its views, the download row, the photo
result, rendering, outputs and messages. Imports no tab."""
