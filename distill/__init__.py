"""emoedge workstation stage: datasets and splits, teacher and student models, training, KD.

Imports torch and `edge` (for the one feature front end); never `export`.
"""
