"""Evaluation (``import catalog.evaluation``): metrics exact against their reference implementations,
and evaluation reports.

Classification (keras.metrics, scikit-learn), detection (pycocotools' COCOeval, the Pascal VOC devkit),
segmentation (confusion-matrix IoU), image quality (scikit-image / tf.image SSIM and PSNR) and generative
scores (Inception Score, FID), verification of embeddings (pair ROC, TAR at FAR, FRR, best-threshold accuracy,
recall@K; scikit-learn's ROC). Reports: :func:`catalog.evaluation.report.write_report`.
"""

from catalog.evaluation.boxes import BOX_FORMATS, box_area, convert_boxes, iou_matrix  # noqa: F401
from catalog.evaluation.classification import (  # noqa: F401
    ClassificationMetrics,
    classification_report,
    confusion_matrix,
    pr_curve,
    roc_curve,
    topk_accuracy,
)
from catalog.evaluation.detection import COCO_STAT_NAMES, coco_evaluate, voc_ap, voc_evaluate  # noqa: F401
from catalog.evaluation.generative import fid, frechet_distance, inception_score  # noqa: F401
from catalog.evaluation.image_quality import ms_ssim, psnr, ssim  # noqa: F401
from catalog.evaluation.segmentation import SegmentationMetrics, segmentation_metrics  # noqa: F401
from catalog.evaluation.verification import (  # noqa: F401
    best_threshold_accuracy,
    equal_error_rate,
    frr_at_threshold,
    rates_at_threshold,
    recall_at_k,
    roc_auc,
    tar_at_far,
    verification_metrics,
    verification_roc,
)
