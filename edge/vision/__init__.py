"""The camera side: face detection, tracking and the face crop fed to the model."""
