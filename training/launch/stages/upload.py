"""Stage 1, ``upload``: the dataset to S3.

Stage 1, ``upload``: the dataset (folder or the dogImages zip) to S3; it prints the URI that
tune and train take as --data (by default they find it there anyway: s3://BUCKET/PREFIX/dogImages).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.launch.aws import Aws
from training.launch.data import default_data_uri, upload_dataset

HELP = "dataset folder or zip to S3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, help="dogImages folder (train/ valid/ test/) or dogImages.zip"
    )
    parser.add_argument("--to", help="destination S3 URI (default: s3://BUCKET/PREFIX/dogImages)")


def run(args: argparse.Namespace, aws: Aws) -> None:
    upload_dataset(aws, args.source, args.to or default_data_uri(aws.bucket, args.prefix))
