"""Datasets: the prepared on-disk format, the embedded `mnist5k`, and the on-device data module."""
