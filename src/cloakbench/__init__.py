"""cloakbench: measure whether face cloaks still protect against future face-recognition models."""

__version__ = "0.1.0"
