"""File formats (being written): PILArNet-M HDF5 and ROOT. See events/formats/README in the docstrings."""
