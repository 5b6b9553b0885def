"""Loaders for the pretrained models of the paper (weights supplied by the user).

Each module reads the weight file in the format its authors published, so a researcher who
downloads the original file and sets ``extractors.<name>.weights`` gets the original model;
a missing file, a wrong sha256 or a file of another format raises ``MissingWeightsError``
naming the file, where it is published and the config key.

| type | model | file |
|---|---|---|
| ``magface`` | MagFace iResNet100, MS1MV2 | ``magface_epoch_00025.pth`` |
| ``arcface_onnx`` | insightface pack recogniser, via insightface (black box) | ``w600k_r50.onnx`` |
| ``arcface_onnx_torch`` | the same file via onnx2torch (differentiable) | ``w600k_r50.onnx`` |
| ``clip_vit`` | CLIP ViT-B/32 image encoder via open_clip | ``ViT-B-32.pt`` |
| ``facenet`` | FaceNet Inception-ResNet-v1, VGGFace2/CASIA | ``20180402-114759-vggface2.pt`` |
| ``evolve_ir152`` | face.evoLVe IR-152 (LowKey) | ``Backbone_IR_152_Arcface_Epoch_112.pth`` |
| ``evolve_resnet152`` | evoLVe ResNet-152 (LowKey) | ``Backbone_ResNet_152_Arcface_Epoch_65.pth`` |
"""

from . import arcface_onnx, clip_vit, evolve, facenet, magface  # noqa: F401  (registers)
