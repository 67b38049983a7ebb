"""The declarative retail dataset (``retail.toml``) every backend is seeded from.

``model`` holds its typed views and the loader; this package re-exports what seeders need.
"""

from erp_backends.dataset.model import DATASET_PATH, Dataset, dataset_digest, load_dataset

__all__ = ["DATASET_PATH", "Dataset", "dataset_digest", "load_dataset"]
