"""What serving the app needs beside its pages: the model store, uploads, files, hosting guards,
limits, locks, camera slots and the GPU decorator. Imports no tab."""
