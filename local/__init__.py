"""The offline stack: AWS on loopback (moto), a local SageMaker endpoint, the real template."""
