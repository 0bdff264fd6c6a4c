"""ECMH, extensible cross-modal hashing (Chen et al., IJCAI 2019; ``seeds/ecmh.txt``).

Modules: ``settings`` (NetworkConfig, TrainSettings, PAD_ID; no torch), ``networks`` (INet,
TNet with a growable DAN vocabulary, device choice), ``agreement`` (A_α Eq. 2, S Eq. 3,
C = sign(F + G) Eq. 8), ``losses`` (L_d Eq. 4, L_c Eq. 5–6, L_h Eq. 7), ``train``
(Algorithm 1, training from scratch), ``extend`` (Algorithm 2, the fine-tuning baseline),
``state_io`` (model ↔ dict of NumPy arrays), and two alternative objectives for INet/TNet
(``TrainSettings.loss``): ``dhd`` (Deep Hash Distillation) and ``idcwh`` (improved deep
classwise hashing). Import from the modules: this package file stays
free of PyTorch so that reading the settings does not load it.
"""
