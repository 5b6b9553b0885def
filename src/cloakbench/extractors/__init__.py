"""Feature extractors: a registry where a new model is one class plus one config entry.

Importing the package registers the built-in extractor types (one module per model family;
heavy third-party imports happen inside the classes, so this stays cheap). The registry and
factory live in :mod:`.registry`, the base class and its contract in :mod:`.base`.
"""

from . import dlib_resnet, onnx_generic, resnet, robust, sface, sface_insightface, small_cnn  # noqa: F401
from . import paper  # noqa: F401  (MagFace, ArcFace ONNX, CLIP, FaceNet, evoLVe)
from .base import Extractor, ExtractorInfo, resolve_weights
from .embedding import embed_batches
from .registry import EXTRACTORS, build_extractor, extractor_class, extractor_loader, register_extractor

__all__ = ["Extractor", "ExtractorInfo", "resolve_weights", "EXTRACTORS", "build_extractor",
           "embed_batches", "extractor_class", "extractor_loader", "register_extractor"]
