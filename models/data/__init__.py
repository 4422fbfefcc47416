"""Data: anatomy sources, tissue maps -> contrasts, lesions, splits.

Public API::

    from models.data import SOURCES, load_volume, available_sources     # sources.py
    from models.data import Subject, make_subject, Sample                 # anatomy.py
    from models.data import CONTRASTS, TARGET_CONTRAST                    # contrasts.py
    from models.data import split_sources, subject_ids                    # splits.py

    s = make_subject("icbm152_2009a-0003", seed=0, lesion_probability=0.7)
    sample = s.sample(slice_index=5, contrast="FLAIR", matrix=(128, 128))
"""

from models.data.anatomy import LABELS, Sample, Subject, make_subject
from models.data.contrasts import CONTRASTS, TARGET_CONTRAST
from models.data.sources import SOURCES, available_sources, get_source, load_volume
from models.data.splits import split_sources, subject_ids

__all__ = [
    "CONTRASTS", "LABELS", "SOURCES", "Sample", "Subject", "TARGET_CONTRAST", "available_sources",
    "get_source", "load_volume", "make_subject", "split_sources", "subject_ids",
]
