"""Which ImageNet backbone each model has and where its default weights live: plain tables, no torch, so that
`promptmix init` and the pre-flight check can name the downloads without building a network."""

#: each model's ImageNet backbone (the built model's ``backbone_kind``, a test keeps them equal; None: the model
#: trains from random initialisation), readable without torch
BACKBONE_KINDS = {
    "csrnet": "vgg16",
    "rescsrnet": "resnet18",
    "guidedepth": "ddrnet23_slim",
    "guidedepth-resnet18": "resnet18",
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "wide-resnet50-2": "wide_resnet50_2",
    "efficientnet-b0": "efficientnet_b0",
    "wrn-28-2": None,
    "wrn-28-10": None,
}
#: ``pretrained: imagenet``: the Hub copy of each backbone whose keys load as they are (torchvision's layout)
DEFAULT_PRETRAINED = {"vgg16": "timm/vgg16.tv_in1k", "resnet18": "timm/resnet18.tv_in1k",
                      "resnet50": "timm/resnet50.tv_in1k", "wide_resnet50_2": "timm/wide_resnet50_2.tv_in1k"}
