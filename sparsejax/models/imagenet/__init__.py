"""torchvision's ImageNet classifiers as Flax Linen modules, one file per family, each
named and shaped so that :func:`sparsejax.models.port.state_dict_to_variables` loads a
torchvision ``state_dict`` key by key (SPEC §4). Inputs are float32 NHWC in [0, 1]; the
normalization torchvision's pretrained weights expect is inside each module. Registered in
:mod:`sparsejax.models.registry` under torchvision's names."""

from sparsejax.models.imagenet.densenet import DenseNet
from sparsejax.models.imagenet.inception import InceptionV3
from sparsejax.models.imagenet.mobilenet import MobileNetV2
from sparsejax.models.imagenet.resnet import ResNet
from sparsejax.models.imagenet.vgg import VGG

__all__ = ["VGG", "DenseNet", "InceptionV3", "MobileNetV2", "ResNet"]
