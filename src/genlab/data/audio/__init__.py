"""Audio: speech-like clips made offline, audio files, log-mel spectrograms and figures."""
