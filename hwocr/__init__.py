"""hwocr: synthetic Korean handwriting -> LMDB -> fine-tuned EasyOCR recognizer."""

__version__ = "0.1.0"
