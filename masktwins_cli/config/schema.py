"""The recipe schema: frozen dataclasses, one per TOML section, every field documented.

Field metadata keys: ``doc`` (one line, with the paper's symbol in brackets where there is one),
``choices`` (allowed strings), ``min`` / ``max`` (inclusive bounds), ``gt`` / ``lt`` (exclusive
bounds), ``length`` (allowed list lengths), ``integer`` (list of integers), ``nested`` (list
of lists, e.g. ``model.pool``), ``tables`` (a list of tables of that dataclass, e.g.
``[[data.source]]``). :mod:`masktwins_cli.config.recipe` validates against
them; ``masktwins recipe RECIPE`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def doc(text: str, default, **rules):
    """A dataclass field with its one-line documentation and validation rules."""
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"doc": text, **rules})
    return field(default=default, metadata={"doc": text, **rules})


@dataclass(frozen=True)
class VolumeEntry:
    """One volume of a role: a ``[[data.source]]``, ``[[data.target]]`` or ``[[data.val]]`` table."""

    raw: str = doc("image volume URI (x.zarr/raw, f.h5:/raw, f.tif), relative to data.root", "")
    labels: str = doc("class-index label volume URI (source with model.task = segmentation, "
                      "and val)", "")
    points: str = doc("synapse point table (.csv or WASP-SYN .h5; source with model.task = "
                      "synapse)", "")
    weight: float = doc("share of the role's crops drawn from this volume, relative to the "
                        "others' weights (0: proportional to its voxel count)", 0.0, min=0.0)


ROLES = ("source", "target", "val")


@dataclass(frozen=True)
class DataSection:
    """Where the volumes are and how patches are drawn from them."""

    root: str = doc("folder the other data paths are relative to (relative to the working dir)", ".")
    source: tuple = doc("labeled source volumes: [[data.source]] tables with raw, labels (or "
                        "points) and an optional weight; a crop first picks a volume, then a place",
                        (), tables=VolumeEntry)
    target: tuple = doc("unlabeled target volumes: [[data.target]] tables with raw and an optional "
                        "weight (none: no adaptation data)", (), tables=VolumeEntry)
    val: tuple = doc("labeled target validation volumes: [[data.val]] tables with raw and labels "
                     "(scores are the mean over them; none: no validation)", (), tables=VolumeEntry)
    source_raw: str = doc("single-volume form of [[data.source]] (older recipes): the labeled "
                          "source image volume URI", "")
    source_labels: str = doc("source-domain label volume URI (class index per voxel); "
                             "model.task = segmentation", "")
    source_points: str = doc("source-domain synapse point table (.csv of masktwins_cli.synapse.points, "
                             "or WASP-SYN .h5), made into cube targets; model.task = synapse", "")
    cube_size: int = doc("edge in voxels of the (pre, post) cube target drawn around each synapse "
                         "point (odd; 3 = the 27 voxels around it); model.task = synapse", 3,
                         min=1, max=31)
    target_raw: str = doc("single-volume form of [[data.target]] (older recipes): the unlabeled "
                          "target image volume URI", "")
    val_raw: str = doc("single-volume form of [[data.val]] (older recipes): the validation image "
                       "URI", "")
    val_labels: str = doc("single-volume form of [[data.val]]: the validation labels", "")
    ignore_label: int = doc("label value that counts nowhere: not in L_sup, not as foreground "
                            "for crop placement (e.g. unlabeled regions; Cityscapes' 255); must "
                            "not be a class (>= model.num_classes)", 255, min=0, max=65535)
    patch_size: tuple = doc("training crop size in voxels, (y, x) in 2D or (z, y, x) in 3D", (256, 256),
                            length=(2, 3), min=8, integer=True)
    normalization: str = doc("intensity normalisation before masking, per volume and channel: "
                             "zscore (zero = the mean), percentile (1st-99th to [-1, 1]) or fixed "
                             "(data.mean / data.std, e.g. ImageNet's for a pretrained encoder)",
                             "zscore", choices=("zscore", "percentile", "fixed"))
    mean: tuple = doc("data.normalization = 'fixed': the mean per channel, in the volume's raw "
                      "units (ImageNet on 0-255 RGB: [123.675, 116.28, 103.53])", ())
    std: tuple = doc("data.normalization = 'fixed': the standard deviation per channel, raw units "
                     "(ImageNet on 0-255 RGB: [58.395, 57.12, 57.375])", (), gt=0.0)
    augment: bool = doc("random flips of training crops (see data.flips)", True)
    flips: str = doc("with data.augment: all (flips on every spatial axis and 90-degree in-plane "
                     "turns: EM has no up or down) or horizontal (left-right flips only: natural "
                     "images, as DAFormer)", "all", choices=("all", "horizontal"))
    intensity_augment: float = doc("strength of random contrast/brightness jitter (0 = off)", 0.1,
                                   min=0.0, max=1.0)
    foreground_oversample: float = doc("probability that a labeled crop is placed around a random "
                                       "foreground voxel (nnU-Net uses 0.33; 0 = uniform crops)",
                                       0.0, min=0.0, max=1.0)
    rare_class_temperature: float = doc("rare-class sampling of source crops (DAFormer: 0.01): a "
                                        "class is drawn with probability softmax((1 - f_c) / T) "
                                        "of its pixel share f_c, then a slice holding it, then a "
                                        "crop around one of its pixels; 0 = off", 0.0, min=0.0)
    rare_class_min_pixels: int = doc("rare-class sampling: a slice counts for a class when it "
                                     "holds at least this many of its pixels (DAFormer: 3000)",
                                     3000, min=1)


@dataclass(frozen=True)
class AugmentSection:
    """Batch augmentation on the training device (MONAI transforms; every group off by default,
    which leaves the batches of data.augment / data.intensity_augment unchanged). Sources: the
    paper trains its EM U-Net with flip, transpose, rotate, resize and elastic deformation
    (DA-ISC's albumentations pipeline); the released code gives the student's target image
    colour jitter and blur before masking (DACS); section defects are this project's, for 3-D EM."""

    rotate_prob: float = doc("geometric (paper: Rotate): probability of a rotation by an arbitrary "
                             "angle in the (y, x) plane (3-D: about z, for anisotropic sections)",
                             0.0, min=0.0, max=1.0)
    rotate_degrees: float = doc("rotation angle drawn uniformly in [-this, this] degrees", 180.0,
                                min=0.0, max=180.0)
    scale_prob: float = doc("geometric (paper: Resize): probability of an in-plane zoom", 0.0,
                            min=0.0, max=1.0)
    scale_range: float = doc("zoom factor per in-plane axis drawn in [1 - this, 1 + this]", 0.2,
                             min=0.0, lt=1.0)
    elastic_prob: float = doc("geometric (paper: ElasticTransform): probability of an elastic "
                              "deformation (MONAI Rand2DElastic / Rand3DElastic)", 0.0,
                              min=0.0, max=1.0)
    elastic_spacing: int = doc("elastic control-point spacing in voxels (3-D: the smoothing sigma "
                               "is a quarter of it)", 32, min=4)
    elastic_magnitude: float = doc("largest control-point displacement, in voxels (drawn in "
                                   "[this / 2, this])", 2.0, min=0.0, max=32.0)
    misalign_prob: float = doc("geometric, 3-D only (this project): probability that the sections "
                               "from a random z on are shifted in-plane, image and labels alike "
                               "(section misalignment)", 0.0, min=0.0, max=1.0)
    misalign_pixels: int = doc("largest misalignment shift in voxels per in-plane axis", 8, min=0,
                               max=64)
    contrast_prob: float = doc("intensity, source only (paper: RandomBrightnessContrast): "
                               "probability of a contrast/brightness change", 0.0, min=0.0, max=1.0)
    contrast: float = doc("contrast factor drawn in [1 - this, 1 + this]", 0.2, min=0.0, lt=1.0)
    brightness: float = doc("brightness shift drawn in [-this, this] standard deviations", 0.2,
                            min=0.0, max=2.0)
    gamma_prob: float = doc("intensity, source only (this project): probability of a gamma "
                            "change (MONAI AdjustContrast, mean and std kept)", 0.0, min=0.0, max=1.0)
    gamma_range: tuple = doc("gamma drawn in [low, high]", (0.7, 1.5), length=(2,), gt=0.0, max=5.0)
    blur_prob: float = doc("intensity, source only (paper: MotionBlur; here Gaussian): "
                           "probability of a Gaussian blur (MONAI GaussianSmooth)", 0.0,
                           min=0.0, max=1.0)
    blur_sigma: tuple = doc("blur sigma drawn in [low, high] voxels", (0.5, 1.5), length=(2,),
                            min=0.0, max=10.0)
    noise_prob: float = doc("intensity, source only (this project): probability of additive "
                            "Gaussian noise", 0.0, min=0.0, max=1.0)
    noise_std: float = doc("noise standard deviation, in the volume's standard deviations", 0.1,
                           min=0.0, max=2.0)
    missing_section_prob: float = doc("intensity, 3-D source only (this project): probability that "
                                      "one section is blanked to the volume's mean", 0.0,
                                      min=0.0, max=1.0)
    strong_target: bool = doc("the released code's strong target augmentation: the student's copy "
                              "of the target batch gets the jitter and blur below before it is "
                              "masked; the teacher predicts on the un-augmented target (and the "
                              "target crops skip data.intensity_augment)", False)
    strong_jitter_prob: float = doc("strong target: probability of brightness/contrast jitter "
                                    "(released code: 0.8)", 0.8, min=0.0, max=1.0)
    strong_jitter: float = doc("strong target: contrast factor in [1 - this, 1 + this] and "
                               "brightness shift in [-this, this] std (released code: 0.2)", 0.2,
                               min=0.0, lt=1.0)
    strong_blur_prob: float = doc("strong target: probability of a Gaussian blur (released code: "
                                  "0.5)", 0.5, min=0.0, max=1.0)
    strong_blur_sigma: tuple = doc("strong target: blur sigma in [low, high] pixels (released "
                                   "code: 0.15-1.15)", (0.15, 1.15), length=(2,), min=0.0, max=10.0)


@dataclass(frozen=True)
class ModelSection:
    """The network and its task (segmentation or synapse detection)."""

    task: str = doc("segmentation (softmax classes, labels volume) or synapse (2 sigmoid channels "
                    "pre/post, point-table labels as cube targets)", "segmentation",
                    choices=("segmentation", "synapse"))
    name: str = doc("network from the registry: unet (five-stage U-Net), resunet (isotropic "
                    "residual U-Net, the synapse network), basicunet (MONAI BasicUNet, six "
                    "features) or segformer (2-D natural images: SegFormer's MiT encoder from "
                    "Hugging Face transformers, pip install 'masktwins[cityscapes]', with the "
                    "DAFormer decoder)", "unet",
                    choices=("unet", "resunet", "basicunet", "segformer"))
    encoder: str = doc("segformer: the MiT size (mit_b5 in DAFormer/HRDA/MIC/MaskTwins; mit_tiny "
                       "is a small test size, not a published one)", "mit_b5",
                       choices=("mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5",
                                "mit_tiny"))
    decoder_channels: int = doc("segformer: the DAFormer decoder's embedding width (DAFormer: "
                                "256)", 256, min=8, max=1024)
    hrda: bool = doc("segformer: HRDA multi-resolution training and inference (a down-scaled "
                     "context pass, a full-resolution detail window, learned scale attention; "
                     "the paper's Cityscapes number uses it)", False)
    hrda_scale: float = doc("HRDA: the context's scale (HRDA: 0.5)", 0.5, gt=0.0, lt=1.0)
    hrda_detail: tuple = doc("HRDA: the detail window in pixels (y, x) (HRDA: [512, 512]); at "
                             "inference it slides at half-window strides", (512, 512),
                             length=(2,), min=32, integer=True)
    hrda_detail_loss: float = doc("HRDA: weight of the detail window's own cross-entropy, the "
                                  "fused one weighing 1 - this (HRDA: 0.1)", 0.1, min=0.0, lt=1.0)
    pretrained: str = doc("segformer: ImageNet weights of the encoder in the original MiT layout "
                          "(e.g. mit_b5.pth of SegFormer/mmsegmentation, downloaded by hand; "
                          "nothing is downloaded here), loaded when a run starts; empty = "
                          "random initialisation", "")
    spatial_dims: int = doc("2 (slice by slice) or 3 (volumetric)", 2, choices=(2, 3))
    in_channels: int = doc("input channels: 1 for EM ((z, y, x) or (y, x) volumes); C > 1 for "
                           "colour or multi-channel images, stored channel-first (c, z, y, x) "
                           "(masktwins prepare stack --rgb)", 1, min=1, max=64)
    num_classes: int = doc("output classes (softmax); 2 = background / mitochondria; "
                           "synapse: the 2 sigmoid channels (pre, post)", 2, min=2, max=255)
    features: tuple = doc("channels of the five U-Net stages (resunet: residual stages; "
                          "basicunet: six, the five stages and the last up-sampling)",
                          (16, 32, 64, 128, 256), length=(5, 6), min=1, integer=True)
    norm: str = doc("normalisation layer", "instance", choices=("instance", "batch"))
    pool: tuple = doc("3D only: pooling kernel per down step, e.g. [[1,2,2],[1,2,2],[2,2,2],[2,2,2]] "
                      "for anisotropic data; empty = 2 on every axis", (), length=(0, 4), min=1,
                      integer=True, nested=True)
    dropout: float = doc("dropout probability in the convolution blocks", 0.0, min=0.0, lt=1.0)


@dataclass(frozen=True)
class MethodSection:
    """MaskTwins (paper sections 4.2-4.3, Algorithm 1) and its ablation switches."""

    adapt: bool = doc("use the unlabeled target (false = NoAdapt / Oracle: supervised loss only)", True)
    adapt_start: int = doc("source-only iterations before the target terms start (0 = from the "
                           "first iteration, as the paper); the EMA teacher follows the student "
                           "throughout, so pseudo-labelling starts from a source-trained model",
                           0, min=0)
    mask_mode: str = doc("complementary (MaskTwins), random (RMask: independent masks), single "
                         "(MIC: one masked view), none (self-training on the unmasked patch)",
                         "complementary", choices=("complementary", "random", "single", "none"))
    mask_ratio: float = doc("[r] probability that a block is masked out of view D", 0.5, gt=0.0, lt=1.0)
    block_size: tuple = doc("[b] mask block size in voxels, one value per axis (y, x) or (z, y, x)",
                            (32, 32), length=(2, 3), min=1, integer=True)
    num_views: int = doc("[K] complementary views (Theorem 7: each block visible in exactly one)", 2,
                         min=2, max=16)
    lambda_cl: float = doc("[lambda] weight of CE(p_D) against (1 - lambda) for CE(p_1-D) (weighted "
                           "BCE for synapse); K > 2 views are weighted 1/K", 0.5, min=0.0, max=1.0)
    lambda_cm: float = doc("[lambda_cm] weight of the twin consistency loss", 0.01, min=0.0)
    consistency_on: str = doc("L_cm as mean squared error on logits (authors' code) or on "
                              "probabilities (softmax; sigmoid for synapse)", "logits",
                              choices=("logits", "probabilities"))
    ema: bool = doc("EMA teacher makes the pseudo-labels (false = the student labels itself)", True)
    ema_alpha: float = doc("[alpha] EMA decay; warm-up alpha_t = min(1 - 1/(t+1), alpha)", 0.999,
                           min=0.0, lt=1.0)
    confidence: str = doc("pseudo-label confidence handling: per-pixel threshold delta, the "
                          "DAFormer quality weight (fraction of pixels above tau), or "
                          "class_balanced (CBST: per batch and predicted class, keep the "
                          "class_balanced_keep most confident share; synapse: per channel, "
                          "instead of synapse_thresholds)", "threshold",
                          choices=("threshold", "quality", "class_balanced"))
    class_balanced_keep: float = doc("share of each predicted class's voxels kept as pseudo-labels "
                                     "with confidence = class_balanced", 0.5, gt=0.0, max=1.0)
    confidence_threshold: float = doc("[delta] pixels whose teacher confidence is below it are "
                                      "ignored (segmentation)", 0.7, min=0.0, lt=1.0)
    synapse_thresholds: tuple = doc("[delta_pre, delta_post] synapse pseudo-labels per channel: teacher "
                                    "sigmoid p >= delta -> 1, p <= 1 - delta -> 0, in between ignored",
                                    (0.75, 0.65), length=(2,), min=0.5, lt=1.0)
    synapse_pseudo_labels: str = doc("synapse pseudo-label form: voxels (every voxel by its own "
                                     "threshold) or cubes (the teacher's detections -- local "
                                     "maxima >= delta -- become data.cube_size cubes, as labelled "
                                     "points do; the rest of each above-threshold blob ignored)",
                                     "voxels", choices=("voxels", "cubes"))
    bce_weighting: str = doc("synapse BCE voxel weights: rebalance (AdaSyn: per channel and batch, "
                             "foreground fraction f clipped to [0.05, 0.95], the rarer class weighted "
                             "max(f, 1-f) / min(f, 1-f), the other 1) or none", "rebalance",
                             choices=("rebalance", "none"))
    pseudo_margin: tuple = doc("pseudo-labels within this many voxels of the patch border are "
                               "ignored, one value per axis (y, x) or (z, y, x), or a (before, "
                               "after) pair per axis ((top, bottom, left, right) in 2-D: DAFormer's "
                               "Cityscapes margins [30, 240, 30, 30]); empty = none. The teacher's "
                               "border predictions lack context and carry its window-edge "
                               "behaviour, which self-training would amplify", (),
                               length=(0, 2, 3, 4, 6), min=0, integer=True)
    teacher_context: tuple = doc("the teacher predicts the pseudo-labels on a target crop this many "
                                 "voxels larger at each end of each axis ((y, x) or (z, y, x)) and "
                                 "the student learns the centre (data.patch_size): pseudo-labels "
                                 "near the student's border then come from the teacher's interior, "
                                 "not from its window edge; empty = the same crop", (),
                                 length=(0, 2, 3), min=0, integer=True)
    quality_tau: float = doc("[tau] confidence above which a pixel counts for the quality weight",
                             0.968, gt=0.0, lt=1.0)
    classmix: bool = doc("DACS ClassMix (DAFormer, MIC and the released MaskTwins code on natural "
                         "images): half of each source image's classes pasted onto a target "
                         "crop, trained against the source labels there and the pseudo-labels "
                         "elsewhere (weight 1, an extra loss_mix term; segmentation)", False)
    feature_distance: float = doc("[lambda_FD] DAFormer's ImageNet feature distance: the student's "
                                  "deepest source features kept near the frozen ImageNet encoder's "
                                  "on the thing classes (DAFormer: 0.005; 0 = off; needs "
                                  "model.pretrained)", 0.0, min=0.0)
    feature_distance_classes: tuple = doc("classes whose pixels count for the feature distance "
                                          "(Cityscapes' things: traffic light, sign, person, rider, "
                                          "car, truck, bus, train, motorcycle, bicycle)",
                                          (6, 7, 11, 12, 13, 14, 15, 16, 17, 18), min=0, integer=True)
    feature_distance_min_ratio: float = doc("a feature pixel takes its block's majority class when "
                                            "that class covers at least this share of the block "
                                            "(DAFormer: 0.75)", 0.75, gt=0.0, max=1.0)
    adain: bool = doc("AdaIN: re-style source features with target statistics in shallow stages", True)
    adain_stages: int = doc("number of shallow encoder stages AdaIN acts on", 2, min=1, max=4)
    class_weights: tuple = doc("cross-entropy class weights for L_sup (empty = unweighted; "
                               "segmentation only)", (),
                               gt=0.0)


@dataclass(frozen=True)
class TrainSection:
    """The optimisation loop."""

    iterations: int = doc("training iterations", 2000, min=1)
    batch_size: int = doc("source crops per iteration", 4, min=1)
    target_batch_size: int = doc("target crops per iteration", 4, min=1)
    optimizer: str = doc("optimiser", "adam", choices=("adam", "adamw"))
    lr: float = doc("peak learning rate", 1e-3, gt=0.0, max=1.0)
    weight_decay: float = doc("weight decay", 0.0, min=0.0)
    decoder_lr_mult: float = doc("the decoder's learning rate as a multiple of train.lr (DAFormer: "
                                 "10 for its head; U-Nets: their decoder blocks)", 1.0, gt=0.0,
                                 max=100.0)
    norm_weight_decay: bool = doc("weight decay on normalisation layers too (DAFormer: none on "
                                  "norms: false)", True)
    poly_power: float = doc("poly decay power: lr = peak * (1 - t/T)^power", 0.9, min=0.0)
    warmup_iterations: int = doc("linear learning-rate warm-up", 0, min=0)
    grad_clip: float = doc("clip the gradient norm to this value (0 = off)", 0.0, min=0.0)
    amp: bool = doc("mixed precision (bf16 autocast) on GPU; ignored on CPU", True)
    channels_last: bool = doc("channels-last memory format for networks and batches on GPU "
                              "(faster bf16 convolutions); ignored on CPU", True)
    compile: bool = doc("torch.compile the training forwards (student, teacher): slower first "
                        "steps while it compiles, then faster; for long runs", False)
    seed: int = doc("seed of every random choice (data, masks, initialisation)", 0, min=0)
    device: str = doc("auto (GPU when there is one), cpu or cuda", "auto", choices=("auto", "cpu", "cuda"))
    threads: int = doc("CPU threads for torch (0 = torch's default)", 0, min=0)
    output_dir: str = doc("run folder (checkpoints, log.jsonl, recipe.toml)", "runs/masktwins")
    checkpoint_every: int = doc("write last.pt every N iterations (and at the end)", 500, min=1)
    log_every: int = doc("log a line every N iterations", 50, min=1)
    val_every: int = doc("validate on data.val_* every N iterations (0 = only at the end)", 0, min=0)


@dataclass(frozen=True)
class InferSection:
    """Sliding-window prediction."""

    window: tuple = doc("window size in voxels ((y, x) or (z, y, x)); empty = data.patch_size", (),
                  length=(0, 2, 3), min=8, integer=True)
    overlap: float = doc("fraction of overlap between neighbouring windows", 0.25, min=0.0, lt=1.0)
    batch_size: int = doc("windows per forward pass", 4, min=1)
    blend: str = doc("window blending", "gaussian", choices=("gaussian", "constant"))
    block_size: tuple = doc("output block size in voxels ((z, y, x)); empty = about 16 x 512 x 512 "
                            "(2-D model) or 256^3 (3-D model)", (), length=(0, 3), min=1, integer=True)
    tta: bool = doc("flip test-time augmentation: average the probabilities over every flip of "
                    "the window's spatial axes (4 passes in 2-D, 8 in 3-D)", False)
    mask: str = doc("region-of-interest mask volume URI (non-zero = predict; the input's shape or "
                    "coarser); empty = everywhere. Output outside the mask is 0", "")
    classes: str = doc("model.num_classes > 2: what infer writes, 'map' (the argmax class per "
                       "voxel, uint8, the input's axes), 'probabilities' (every class, float32, "
                       "(K, z, y, x)) or 'both' (the probabilities at the output, the map beside "
                       "them in <dataset>_map); two classes always write the foreground "
                       "probability", "map", choices=("map", "probabilities", "both"))


@dataclass(frozen=True)
class EvaluateSection:
    """Scoring against a labeled volume."""

    threshold: float = doc("binarisation threshold on the foreground probability", 0.5, gt=0.0, lt=1.0)
    mode: str = doc("per_slice (mean over 2D slices, the paper's convention) or volume",
                    "per_slice", choices=("per_slice", "volume"))


@dataclass(frozen=True)
class Recipe:
    """One self-contained recipe: every setting of a run."""

    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    model: ModelSection = field(default_factory=ModelSection)
    method: MethodSection = field(default_factory=MethodSection)
    train: TrainSection = field(default_factory=TrainSection)
    infer: InferSection = field(default_factory=InferSection)
    evaluate: EvaluateSection = field(default_factory=EvaluateSection)
