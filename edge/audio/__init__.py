"""The microphone side: audio front end, sliding feature windows and the time-keyed ring buffer."""
