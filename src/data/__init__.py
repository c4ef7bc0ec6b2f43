"""Data: synthetic tomograms, copick/MRC/zarr I/O, portal download, label masks, splits."""
