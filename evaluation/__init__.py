"""Evaluation (``import catalog.evaluation``): metrics exact against their reference implementations,
and evaluation reports.

Classification (keras.metrics, scikit-learn), detection (pycocotools' COCOeval, the Pascal VOC devkit),
segmentation (confusion-matrix IoU), image quality (scikit-image / tf.image SSIM and PSNR) and generative
scores (Inception Score, FID). Reports: :func:`catalog.evaluation.report.write_report`.
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
