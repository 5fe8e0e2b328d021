"""COCO and Pascal VOC annotation readers: image records with pixel xyxy boxes and class indices.

Box conventions converted here, once: COCO ``bbox`` is (x, y, width, height) in pixels ->
(x, y, x + width, y + height); VOC ``bndbox`` holds 1-based inclusive pixel indices ->
(xmin - 1, ymin - 1, xmax, ymax). Both become pixel (x_min, y_min, x_max, y_max), pixel (x, y) covering
[x, x+1) x [y, y+1). Annotations are read in the stored pixel orientation (no EXIF rotation), as COCO's
``width``/``height`` and VOC's ``<size>`` describe it.

Segmentation masks use the same value convention as the generated shapes: 0 background, class index + 1
for an object's pixels, 255 for pixels to ignore (VOC's object borders, COCO crowd regions).
"""

from __future__ import annotations

import json
import os
import warnings
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
IGNORE_LABEL = 255


def _check_boxes(boxes, labels, width, height, where):
    """Clip boxes to the image with a warning naming ``where``; drop empty ones.

    Returns (boxes, labels, keep mask)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if outside.any():
        warnings.warn(f"{where}: {int(outside.sum())} box(es) extend outside the {width}x{height} image; "
                      "clipped to it.", stacklevel=4)
    clipped = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if (~keep).any():
        warnings.warn(f"{where}: {int((~keep).sum())} box(es) with no area inside the image; dropped.",
                      stacklevel=4)
    return clipped[keep], np.asarray(labels, np.int32)[keep], keep


def _rle_counts(counts):
    """COCO compressed RLE string -> run lengths (the LEB128-like scheme of the COCO API's maskApi)."""
    if not isinstance(counts, str):
        return list(counts)
    out, i = [], 0
    data = counts.encode()
    while i < len(data):
        value, shift, more = 0, 0, True
        while more:
            c = data[i] - 48
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            i += 1
            shift += 1
            if not more and (c & 0x10):
                value |= -1 << (5 * shift)
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def coco_mask(segmentation, height, width) -> np.ndarray:
    """Rasterize one COCO ``segmentation`` (polygons, or RLE compressed/uncompressed) into bool (H, W)."""
    if isinstance(segmentation, list):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        for poly in segmentation:
            if len(poly) >= 6:
                draw.polygon([(poly[k], poly[k + 1]) for k in range(0, len(poly), 2)], fill=1)
        return np.asarray(canvas, bool)
    flat = np.zeros(height * width, bool)
    pos, value = 0, False
    for run in _rle_counts(segmentation["counts"]):
        flat[pos:pos + run] = value
        pos += run
        value = not value
    return flat.reshape(width, height).T  # RLE runs go down columns (Fortran order)


def read_coco(annotation_file: str, images_dir: str):
    """Parse a COCO instances file. Returns (records, class_names, skipped {path: reason}).

    Each record: ``path``, ``image_id`` (the file's), ``category_ids`` (the file's category id of each class
    index, shared by all records), ``width``, ``height``, ``boxes`` float32 (k, 4) pixel xyxy, ``labels``
    int32 (k,) indices into class_names (categories sorted by id), ``segments`` list of (label,
    segmentation, iscrowd). Crowd annotations have no box (they only mark ignore regions in masks).
    """
    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO annotation file {annotation_file} does not exist.")
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"COCO images folder {images_dir} does not exist.")
    try:
        with open(annotation_file) as f:
            data = json.load(f)
        categories = sorted(data["categories"], key=lambda c: c["id"])
        images = data["images"]
        annotations = data.get("annotations", [])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{annotation_file} is not a COCO annotation file ({type(e).__name__}: {e}).") from e
    index = {c["id"]: i for i, c in enumerate(categories)}
    category_ids = tuple(c["id"] for c in categories)
    by_image = {img["id"]: [] for img in images}
    for ann in annotations:
        if ann.get("image_id") not in by_image or ann.get("category_id") not in index:
            warnings.warn(f"{annotation_file}: annotation {ann.get('id')} names an unknown image or category; "
                          "ignored.", stacklevel=3)
            continue
        by_image[ann["image_id"]].append(ann)
    records, skipped = [], {}
    for img in images:
        path = os.path.join(images_dir, img["file_name"])
        if not os.path.isfile(path):
            skipped[path] = f"named by {annotation_file} but missing"
            warnings.warn(f"skipping {path}: named by {annotation_file} but missing.", stacklevel=3)
            continue
        anns = by_image[img["id"]]
        plain = [a for a in anns if not a.get("iscrowd", 0)]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in plain)]
        labels = [index[a["category_id"]] for a in plain]
        boxes, labels, _ = _check_boxes(boxes, labels, img["width"], img["height"], path)
        segments = [(index[a["category_id"]], a["segmentation"], bool(a.get("iscrowd", 0)))
                    for a in sorted(anns, key=lambda a: -a.get("area", 0)) if "segmentation" in a]
        records.append({"path": path, "image_id": img["id"], "category_ids": category_ids,
                        "width": img["width"], "height": img["height"], "boxes": boxes,
                        "labels": labels, "segments": segments})
    return records, tuple(c["name"] for c in categories), skipped


def coco_segmentation_mask(record) -> np.ndarray:
    """uint8 (H, W) mask of one COCO record: larger objects first, so smaller ones stay visible on top."""
    mask = np.zeros((record["height"], record["width"]), np.uint8)
    for label, segmentation, crowd in record["segments"]:
        inside = coco_mask(segmentation, record["height"], record["width"])
        mask[inside] = IGNORE_LABEL if crowd else label + 1
    return mask


def read_voc(root: str, split: str = "train", task: str = "detection"):
    """Parse a Pascal VOC folder (Annotations/, JPEGImages/, ImageSets/, SegmentationClass/).

    The image ids come from ImageSets/Main/<split>.txt (ImageSets/Segmentation/<split>.txt for
    segmentation), or from every file of Annotations/ (SegmentationClass/) when that list is absent.
    Returns (records, class_names, skipped {path: reason}); records as in ``read_coco`` plus ``mask_path``.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"VOC folder {root} does not exist.")
    list_dir = "Segmentation" if task == "segmentation" else "Main"
    list_file = os.path.join(root, "ImageSets", list_dir, f"{split}.txt")
    if os.path.isfile(list_file):
        with open(list_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
    else:
        folder = os.path.join(root, "SegmentationClass" if task == "segmentation" else "Annotations")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"VOC folder {root} has neither {list_file} nor {folder}.")
        ids = sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if not n.startswith("."))
    parsed, skipped = [], {}
    for image_id in ids:
        xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
        path = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
        mask_path = os.path.join(root, "SegmentationClass", f"{image_id}.png")
        needed = [path, mask_path if task == "segmentation" else xml_path]
        missing = [p for p in needed if not os.path.isfile(p)]
        if missing:
            skipped[missing[0]] = f"listed for VOC image {image_id} but missing"
            warnings.warn(f"skipping {missing[0]}: listed for VOC image {image_id} but missing.",
                          stacklevel=3)
            continue
        objects, size = [], None
        if os.path.isfile(xml_path):
            try:
                tree = ET.parse(xml_path).getroot()
                s = tree.find("size")
                size = (int(s.find("width").text), int(s.find("height").text)) if s is not None else None
                for obj in tree.findall("object"):
                    bb = obj.find("bndbox")
                    objects.append((obj.find("name").text.strip(),
                                    [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]))
            except (ET.ParseError, AttributeError, ValueError) as e:
                raise ValueError(f"{xml_path} is not a VOC annotation file ({type(e).__name__}: {e}).") from e
        parsed.append((path, mask_path, objects, size))
    names = sorted({name for _, _, objects, _ in parsed for name, _ in objects})
    class_names = VOC_CLASSES if set(names) <= set(VOC_CLASSES) else tuple(names)
    index = {n: i for i, n in enumerate(class_names)}
    records = []
    for path, mask_path, objects, size in parsed:
        if size is None:
            with Image.open(path) as img:
                size = img.size
        boxes = [[x0 - 1, y0 - 1, x1, y1] for _, (x0, y0, x1, y1) in objects]
        labels = [index[n] for n, _ in objects]
        boxes, labels, _ = _check_boxes(boxes, labels, size[0], size[1], path)
        records.append({"path": path, "width": size[0], "height": size[1], "boxes": boxes,
                        "labels": labels, "mask_path": mask_path})
    return records, class_names, skipped


def voc_segmentation_mask(record) -> np.ndarray:
    """uint8 (H, W) mask of one VOC record: the palette indices of SegmentationClass (0, 1..20, 255)."""
    with Image.open(record["mask_path"]) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{record['mask_path']} must be a palette or grayscale PNG of class indices; "
                             f"got mode {img.mode}.")
        return np.asarray(img, np.uint8)


def read_mask_folder(root: str, images_dir: str, masks_dir: str, class_file: str | None = None,
                     select=None):
    """Pair the images of ``images_dir`` with the class-index PNGs of ``masks_dir`` (same file stem).

    Masks hold 0 for background, k + 1 for class k and 255 (``IGNORE_LABEL``) for pixels left out, as
    ``voc_segmentation_mask`` reads them. Class names come from ``class_file`` (one name per line, the
    class of mask value 1 first), else ``class_1`` .. ``class_K`` with K the largest mask value found.
    ``select``: a function of the sorted list of stems returning the stems to keep (a split).
    Returns (records, class_names, skipped {path: reason}); records as ``read_voc``'s, without boxes.
    """
    for folder in (images_dir, masks_dir):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"segmentation folder {root} must hold images/ and masks/; {folder} does not "
                                    f"exist.")
    masks = {os.path.splitext(n)[0]: os.path.join(masks_dir, n) for n in os.listdir(masks_dir)
             if n.lower().endswith(".png") and not n.startswith(".")}
    images = {os.path.splitext(n)[0]: os.path.join(images_dir, n) for n in sorted(os.listdir(images_dir))
              if not n.startswith(".") and os.path.isfile(os.path.join(images_dir, n))}
    skipped = {}
    for stem in sorted(set(images) - set(masks)):
        skipped[images[stem]] = f"no mask {stem}.png in {masks_dir}"
        warnings.warn(f"skipping {images[stem]}: no mask {stem}.png in {masks_dir}.", stacklevel=3)
    stems = sorted(set(images) & set(masks))
    stems = list(select(stems)) if select is not None else stems
    records = []
    for stem in stems:
        with Image.open(images[stem]) as img:
            width, height = img.size
        records.append({"path": images[stem], "mask_path": masks[stem], "width": width, "height": height,
                        "boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int32)})
    if class_file is not None and os.path.isfile(class_file):
        with open(class_file, encoding="utf-8") as f:
            class_names = tuple(line.strip() for line in f if line.strip())
    else:
        values = [voc_segmentation_mask(r) for r in records]
        largest = max((int(v[v != IGNORE_LABEL].max(initial=0)) for v in values), default=0)
        class_names = tuple(f"class_{k}" for k in range(1, largest + 1))
    return records, class_names, skipped
