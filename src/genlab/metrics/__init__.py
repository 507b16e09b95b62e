"""Measures of generated samples: FID over pluggable feature extractors, and more to come."""
