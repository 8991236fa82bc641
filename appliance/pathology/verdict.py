"""The label of a slide the model cannot judge, and why (docs/pathology-ood.md).

The guard (appliance/pathology/ood.py) decides it; readers of stored slide results (the
console) name it too, and find it here without loading the guard's image statistics (OpenCV).
"""

UNSUPPORTED = "unsupported"
UNSUPPORTED_REASON = "tissue unlike the model's training data"
