"""The typed configuration schema: one dataclass per section of a config (docs/config.md
is generated from it). :mod:`blurfield.config` loads configs against it and re-exports
everything here; the choices and the Richardson–Lucy options come from
:mod:`blurfield.options`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blurfield.options import (
    AdeLayout,
    Benchmark,
    ContentLoss,
    Device,
    Generator,
    GoproBlurDir,
    InitKernels,
    InitUpsampling,
    KernelFit,
    KoehlerSsim,
    LoggerKind,
    OperatorPadding,
    ReblurNorm,
    ReblurSpace,
    RestoreOptions,
    SceneSource,
    Task,
    WandbMode,
)

# --------------------------------------------------------------------------- sections


@dataclass
class ModelCfg:
    """The kernel estimator (docs/design.md §3)."""

    n_basis: int = 25  # B, number of basis kernels
    kernel_size: int = 33  # K, basis kernel support (only 33 is implemented)
    base_width: int = 64  # w, width of the first level; 64 = the paper's network
    gamma_in: float = 2.2  # the estimator's own input transform x**gamma_in - 0.5
    kernel_code: str = "bottleneck"  # kernel head input: bottleneck (paper) | levels


@dataclass
class DataCfg:
    """The training/validation stream read by BlurDataModule (docs/design.md §8). Shard patterns:
    paths, globs, braces ``train-{000000..000009}.tar``, ``::``-joined lists, or URLs."""

    train_shards: str = "data/shards/builtin/train-{000000..000003}.tar"  # training stream
    val_shards: str = "data/shards/builtin/val-000000.tar"  # "" = no validation
    samples_per_epoch: int = 6000  # total over all ranks and workers
    val_samples: int = 64  # the first n samples of val_shards, centre crops, every epoch
    batch_size: int = 4  # per rank
    workers: int = 2  # loader processes per rank (0 = in the training process)
    crop_size: int = 256  # blurry crop; the sharp crop is crop_size + kernel_size - 1
    shuffle_buffer: int = 256  # raw samples held per worker (~1 MB each at 512 x 512)
    seed: int = 0  # streams are seeded by (seed, epoch, rank, worker)
    require_field: bool = True  # drop (and count) blurry/sharp pairs without a blur field
    key_log: str | None = None  # a folder: each worker appends the keys it delivers


@dataclass
class TrainCfg:
    """Optimisation, schedule, devices, checkpoints (docs/design.md §4)."""

    task: Task = Task.estimator  # estimator | deblurgan (the reblur fine-tune, finetune.*)
    epochs: int = 1200  # paper: 1,200 (300 with p = 2, then 900 with p = 1)
    lr: float = 1e-4  # Adam learning rate
    lr_halve_every: int = 150  # epochs
    kernel_loss_p_switch_epoch: int = 300  # p = 2 before, p = 1 from this epoch on
    kernel_loss_weight: float = 1.0  # weight of eq. 6 (paper: equal weights)
    reblur_loss_weight: float = 1.0  # weight of eq. 5
    moment_loss_weight: float = 0.0  # per-pixel direction + size term (losses.moment_loss)
    moment_size_weight: float = 1.0  # weight of the log-trace size term inside the moment loss
    mixing_entropy_weight: float = 0.0  # per-pixel mixing entropy / log B (losses.mixing_entropy)
    mixing_entropy_from_epoch: int = 0  # the entropy and usage terms count from this epoch on
    mixing_usage_weight: float = 0.0  # reward on each image's kernel usage (losses.mixing_usage)
    uniform_epochs: int = 0  # curriculum: first n epochs, crops blurred by one kernel
    reblur_space: ReblurSpace = ReblurSpace.display  # display | linear (the authors' code)
    reblur_gamma: float = 2.2  # data gamma of the reblur loss (eq. 3); the shards' gamma
    l1_chunk: int = 4096  # pixels per chunk of the p = 1 kernel loss
    l1_stride: int = 1  # p = 1 loss on every s-th pixel per axis (random offset); 1 = all
    accelerator: str = "auto"  # Lightning: auto | cpu | gpu
    devices: Any = 1  # devices per node (GPUs, or CPU processes)
    num_nodes: int = 1  # nodes (Slurm: one task per GPU)
    strategy: str = "auto"  # Lightning strategy: auto | ddp | ddp_spawn ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed (losses stay float32)
    channels_last: bool = False  # memory format of the network
    compile: bool = False  # torch.compile the network
    out_dir: str = "runs"  # runs live in <out_dir>/<run_name>/
    run_name: str = "estimator"  # the run directory and W&B run name
    resume: bool = False  # continue from the run's newest checkpoint (fresh if none)
    init_from: str | None = None  # estimator weights to start a new run from (any format)
    seed: int = 0  # model initialisation (data.seed seeds the data)
    init_gain: float = 0.5  # conv init std = gain sqrt(2 / (k k out)); 0.5 = code, 1 = He
    init_upsampling: InitUpsampling = InitUpsampling.random  # random (code) | nearest (smooth)
    init_kernels: InitKernels = InitKernels.network  # network | lines: head fitted to lines
    freeze_kernels_epochs: int = 0  # kernel head fixed for the first n epochs
    max_steps: int = -1  # stop after this many optimizer steps (-1 = epochs decide)
    limit_val_batches: int = 4  # validation batches per epoch
    val_every_n_epochs: int = 1  # validate every n epochs
    log_every_n_steps: int = 10  # scalar logging interval
    image_every_n_epochs: int = 10  # pictures (basis PSFs, mixing, per-pixel PSFs); 0 = never
    progress_bar: bool = True  # tqdm progress bar


@dataclass
class LoggingCfg:
    """Weights & Biases (offline unless WANDB_MODE says otherwise) or CSV."""

    logger: LoggerKind = LoggerKind.wandb  # wandb | csv | none
    project: str = "blurfield"  # W&B project
    entity: str | None = None  # W&B entity (team); None = your default
    group: str | None = None  # W&B group (ablations share one)
    tags: list[str] = field(default_factory=list)  # W&B tags
    mode: WandbMode = WandbMode.offline  # offline | online | disabled; WANDB_MODE overrides


@dataclass
class RestoreCfg(RestoreOptions):
    """Non-uniform Richardson–Lucy and the estimate/deblur commands (docs/design.md §5): first
    RL's options and what blurfield.api.restore does around RL (RLOptions, RestoreOptions,
    shared with the API), then the commands' own."""

    restore_scale: Any = "field"  # field | full | a factor in [1, the field's scale]
    checkpoint: str | None = None  # estimator weights; None = the shipped model
    field: str | None = None  # a field .npz to restore with instead of estimating
    out_dir: str = "out"  # where estimate/deblur write their files
    device: Device = Device.auto  # auto | cpu | cuda
    gamma: float = 2.2  # data gamma (1 for linear data such as Köhler's)
    denoise_above: float | None = 0.001  # photos noisier (σ, linear) are denoised first (README)
    jpeg_smooth: float | None = 0.002  # JPEG photos not denoised: that filter at this σ (README)
    scale: Any = "auto"  # auto | a downscale factor >= 1
    max_megapixels: float = 1.5  # what the estimator sees with scale=auto
    estimate_tile: int = 128  # estimate in overlapping tiles of this side (README); 0 = whole photo
    estimate_elements: int = 0  # the tiles' basis elements merged into at most this many; 0 = B
    refine_iterations: int = 10  # blind refinement of the estimated kernel (README); 0 = off
    refine_margin: float = 0.2  # it replaces the field when log(U_field / U_refined) exceeds this
    refine_window: int = 384  # side of the centre square the kernel is refined on
    long_blur_scale: float = 2.0  # scale auto, refined kernel cut off: estimate this much smaller
    threads: Any = "auto"  # torch threads: auto = OMP_NUM_THREADS, else the cores available
    workers: Any = "auto"  # photos at once, a process each; auto = min(photos, threads), 1 on GPU


@dataclass
class TremorCfg:
    """Hand-tremor generator (data_prep/kernels/tremor.py). Per-kernel draws are uniform on
    [min, max] unless marked log-uniform; min == max fixes a value. Ranges: docs/kernels.md's
    measured parameter set unless noted."""

    exposure_min: float = 0.05  # s; exposure T ~ U, docs/kernels.md
    exposure_max: float = 1.0  # s; the paper's bound (exposure <= 1 s)
    window: float = 8.0  # s; synthesis window >> exposure, else drift vanishes (docs/kernels.md)
    rate: float = 128.0  # Hz; synthesis sampling, > 5x the 12 Hz tremor peak (our choice)
    drift_fc_min: float = 0.4  # Hz, log-uniform; postural drift centre frequency, docs/kernels.md
    drift_fc_max: float = 2.0  # Hz
    drift_q_min: float = 0.5  # 1; drift resonance Q, over- to critically damped, docs/kernels.md
    drift_q_max: float = 1.0  # 1
    drift_vrms_min: float = 0.25  # deg/s, log-uniform; drift angular-velocity RMS (major axis)
    drift_vrms_max: float = 2.5  # deg/s; docs/kernels.md
    drift_aniso_min: float = 0.5  # 1; drift minor/major RMS ratio, docs/kernels.md
    drift_aniso_max: float = 1.0  # 1
    tremor_f_min: float = 8.0  # Hz; physiological tremor peak, 8-12 Hz band (Gavant et al.)
    tremor_f_max: float = 12.0  # Hz
    tremor_q_min: float = 2.0  # 1; tremor resonance Q, docs/kernels.md
    tremor_q_max: float = 5.0  # 1
    tremor_rms_min: float = 0.002  # deg, log-uniform; tremor angle RMS per axis, docs/kernels.md
    tremor_rms_max: float = 0.02  # deg (~0.13-1.3 deg/s velocity)
    focal_min: float = 1000.0  # px, log-uniform; docs/kernels.md "1,000-3,000 for variety"
    focal_max: float = 3000.0  # px; 2,000 px ~ 30 mm equivalent on a 2,400 px wide image
    samples_per_px: float = 2.0  # samples per px at the path's fastest (docs/kernels.md pitfall)
    min_samples: int = 16  # samples per path at least (a near-still path is still a path)


@dataclass
class BoracchiCfg:
    """Boracchi & Foi (2012) random trajectories (data_prep/kernels/boracchi.py), without
    their border clamping and with every partial exposure summing to 1. Ranges: their
    defaults (anxiety 0.1 rand, centripetal 0.7 rand, gaussian 10 rand, big shakes 0.2 rand,
    60 px on a 64 px canvas over 2,000 steps), lengths scaled to our kernel size."""

    n_steps: int = 2000  # steps of the whole trajectory (Boracchi & Foi: 2,000)
    length_min: float = 30.0  # px; total length of the whole trajectory, fixed per kernel
    length_max: float = 30.0  # px; 60 px / 64 px canvas x 33 px ~ 31 px (Boracchi & Foi)
    anxiety_min: float = 0.0  # 1; scales kicks, pull and reversal rate (B&F: 0.1 rand)
    anxiety_max: float = 0.1  # 1
    centripetal_max: float = 0.7  # 1; pull towards the start ~ U(0, max) (B&F: 0.7 rand)
    gaussian_max: float = 10.0  # 1; Gaussian kick scale ~ U(0, max) (B&F: 10 rand)
    big_shake_max: float = 0.2  # 1; reversal rate ~ U(0, max), per step x anxiety (B&F)
    exposure_min: float = 0.1  # 1; exposure fraction ~ U (B&F use 1/1000, 1/10, 1/2, 1)
    exposure_max: float = 1.0  # 1
    samples_per_px: float = 4.0  # rendered samples per px of path (the steps are ~0.015 px)


@dataclass
class MixCfg:
    """The ``mix`` generator (data_prep/kernels/mix.py): each kernel is drawn by Boracchi &
    Foi's generator with this probability, else by the tremor generator."""

    boracchi_share: float = 0.5  # 1; probability of a Boracchi & Foi kernel


@dataclass
class KernelsCfg:
    """The camera-shake kernel bank (data_prep kernels; docs/kernels.md)."""

    generator: Generator = Generator.tremor  # tremor | boracchi | mix (section mix)
    count: int = 10000  # kernels in the bank (paper: 500,000)
    seed: int = 0  # kernel i is drawn from SeedSequence([seed, generator, i])
    kernel_size: int = 33  # px, odd; the paper's support <= 33 x 33
    out_dir: str = "data/kernels"  # bank folder: chunks, params, bank.json, sheet
    chunk_size: int = 65536  # kernels per file kernels_XXXXX.npy (285 MB at K = 33)
    batch_size: int = 1024  # kernels generated at once (memory ~ 60 MB per 1,024)
    fit: KernelFit = KernelFit.reject  # reject (redraw a path leaving K x K) | shrink (scale it)
    max_tries: int = 100  # draws per kernel with fit=reject; the last one is shrunk
    margin: int = 1  # px; outer rings kept empty (mass on the border ring = a defect)
    sheet: bool = True  # write sheet.png (64 kernels as PSFs) and hist.png
    tremor: TremorCfg = field(default_factory=TremorCfg)
    boracchi: BoracchiCfg = field(default_factory=BoracchiCfg)
    mix: MixCfg = field(default_factory=MixCfg)


@dataclass
class ShardsCfg:
    """Synthetic training shards (data_prep shards; docs/design.md §2)."""

    source: SceneSource = SceneSource.builtin  # builtin | ade20k | folder
    root: str | None = None  # ade20k/folder: the dataset folder (required for them)
    num_samples: int = 256  # samples to write (train + val)
    out_dir: str = "data/shards/builtin"  # shards, manifest.json, plan.json
    seed: int = 0  # sample i draws everything from (seed, i)
    workers: int = 2  # worker processes
    shard_size: int = 64  # samples per tar
    val_fraction: float = 0.125  # share of source images held out (split by image id)
    kernel_size: int = 33  # K of the layer kernels
    gamma: float = 2.2  # camera gamma of the synthetic photos
    normalize_masks: bool = True  # masks / sum of masks (false = Algorithm 1 literally)
    max_objects: int = 3  # object layers per scene at most (paper 3; the authors' code 5)
    brightness_min: float = 0.5  # s ~ U[min, max] multiplies the linear sharp image (unclipped)
    brightness_max: float = 1.5  # upper end of s
    scene_size: int = 512  # builtin: side of the generated dead-leaves scenes (px)
    crop_size: int = 256  # scenes smaller than crop_size + kernel_size - 1 are skipped
    min_object_pixels: int = 400  # instances smaller than this stay in the background
    max_side: int = 0  # ade20k/folder: downscale larger scenes to this longer side (0 = keep)
    kernel_bank: str | None = None  # a bank folder (data_prep kernels); None = generate on the
    #   fly from the `kernels` section: kernel id i = the kernel that bank would hold at i
    kernel_pool: int = 0  # ids are drawn from [0, pool); 0 = the bank's size or kernels.count
    noise: bool = False  # Poisson-Gaussian noise, linear light, before clipping (docs/design.md §2)
    noise_poisson_min: float = 0.0  # a: y = a * Poisson(x / a), a ~ U[min, max] (0 = none)
    noise_poisson_max: float = 0.01  # upper end of a
    noise_gauss_min: float = 0.0  # sigma: + N(0, sigma^2), sigma ~ U[min, max]
    noise_gauss_max: float = 0.01  # upper end of sigma
    layout: AdeLayout = AdeLayout.auto  # ade20k: auto | full (ADE20K_2021_17_01) | challenge (2016)
    subsets: list[str] = field(default_factory=lambda: ["training", "validation"])  # ade20k
    ade_index: str | None = None  # full release: index_ade20k.pkl (default <root>/...)
    ade_class_names: list[str] = field(default_factory=lambda: ["person", "car"])  # objects
    ade_class_ids: list[int] = field(default_factory=lambda: [1831, 401])  # if no pkl
    challenge_class_ids: list[int] = field(default_factory=lambda: [13, 21])  # person, car
    progress: bool = True  # tqdm progress bar
    part: int = 0  # build only the shards s with s % parts == part (a Slurm array task);
    parts: int = 1  # a final run with parts = 1 finds them complete and writes manifest.json


@dataclass
class EvalCfg:
    """blurfield evaluate (docs/design.md §7). RL settings come from `restore`; None here = the
    benchmark's protocol default (blurfield/evaluation/protocols.py)."""

    # realblur_j | realblur_r | koehler | gopro | synthetic | folder
    benchmark: Benchmark = Benchmark.synthetic
    root: str | None = None  # the benchmark's folder (or shards for synthetic)
    out_dir: str = "eval_out"  # results.csv, summary.md/json, pictures/, index.html
    limit: int = 0  # 0 = every image; n = the first n (in the reader's order)
    checkpoint: str | None = None  # estimator weights; None = restore.checkpoint (or shipped)
    deblurrer: str | None = None  # a DeblurGAN generator: report it alone instead of RL
    gamma: float | None = None  # data gamma for RL (None: protocol's; synthetic: the sample's)
    saturation: bool | None = None  # saturation-aware RL (None: protocol's)
    iterations: int | None = None  # RL iterations (None: restore.iterations)
    quantize: bool = True  # score restorations rounded to 8 bits, as saved files would be
    device: Device = Device.auto  # auto | cpu | cuda
    resume: bool = True  # skip images that already have a row in results.csv
    pictures: int = -1  # side-by-side pictures for the first n images (-1 = all, 0 = none)
    picture_size: int = 512  # longer side of each panel in the pictures (px)
    list_file: str | None = None  # RealBlur: the test list (None = found under root)
    ecc_iterations: int = 100  # RealBlur ECC (OpenCV's findTransformECC settings)
    ecc_eps: float = 1e-10  # stop when the correlation changes by less (0 = all iterations)
    ecc_gauss: int = 5  # Gaussian pre-smoothing size of ECC
    ecc_levels: int = 1  # 1 = full resolution only; more for large misalignment
    koehler_frame_step: int = 1  # Köhler: score every n-th recorded sharp frame
    koehler_ssim: KoehlerSsim = KoehlerSsim.best  # best (at the max-PSNR frame) | max (over frames)
    gopro_blur_dir: GoproBlurDir = GoproBlurDir.blur  # blur | blur_gamma
    window: int = 256  # synthetic: centre window side scored per sample (multiple of 32)
    jpeg: bool = False  # photos saved as JPEG (RealBlur-J, handmade --jpeg): restore.jpeg_smooth


@dataclass
class FinetuneCfg:
    """DeblurGAN fine-tune with reblur consistency (docs/design.md §6; blurfield.tasks.finetune)."""

    ngf: int = 64  # generator width (DeblurGAN: 64)
    n_blocks: int = 9  # generator residual blocks (DeblurGAN: 9)
    dropout: float = 0.5  # inside each residual block (DeblurGAN: 0.5)
    ndf: int = 64  # critic width (DeblurGAN: 64)
    critic_layers: int = 3  # stride-2 convs of the PatchGAN critic (3 = 70 x 70 patches)
    generator_init: str | None = None  # pre-trained generator: DeblurGAN's latest_net_G.pth,
    # a fine-tune checkpoint or a DeblurGenerator state dict; None = random init
    lr: float = 1e-4  # Adam, generator and critic
    beta1: float = 0.5  # Adam beta1 (DeblurGAN)
    beta2: float = 0.999  # Adam beta2
    n_critic: int = 5  # critic steps per generator step, on the same batch
    gp_weight: float = 10.0  # WGAN-GP lambda
    content_loss: ContentLoss = ContentLoss.perceptual  # perceptual (VGG19) | mse | none
    content_weight: float = 100.0  # x perceptual (or MSE) content loss
    vgg_path: str | None = None  # VGG19 state dict (features.N.weight), needed by perceptual
    estimator: str | None = None  # frozen kernel estimator for the reblur loss
    reblur_weight: float = 100.0  # 0 = plain DeblurGAN (the estimator is not loaded)
    reblur_norm: ReblurNorm = ReblurNorm.l1  # l1 | l2 (mean absolute / squared, display)
    reblur_padding: OperatorPadding = OperatorPadding.same  # same | valid (the centre) | circular
    gamma: float = 2.2  # camera gamma of the reblur (1 for linear data)
    image_every_n_epochs: int = 1  # restored samples to the logger
    num_images: int = 4  # restored samples logged per validation


@dataclass
class Config:
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    logging: LoggingCfg = field(default_factory=LoggingCfg)
    restore: RestoreCfg = field(default_factory=RestoreCfg)
    kernels: KernelsCfg = field(default_factory=KernelsCfg)
    shards: ShardsCfg = field(default_factory=ShardsCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    finetune: FinetuneCfg = field(default_factory=FinetuneCfg)


