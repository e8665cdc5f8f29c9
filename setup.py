from setuptools import find_packages, setup

setup(
    name="rawcnn",
    version="0.1.0",
    description="A from-scratch CNN engine with hand-written forward and backward passes "
                "(Numba on the CPU, Numba CUDA on NVIDIA GPUs) for teaching, gradient checks "
                "and chest-radiograph research.",
    python_requires=">=3.10",
    packages=find_packages(include=["rawcnn", "rawcnn.*", "kernels", "kernels.*",
                                    "weights_import", "weights_import.*"]),
    py_modules=["cli"],
    install_requires=["numpy>=1.24", "numba>=0.59", "h5py", "opencv-python-headless",
                      "click>=8", "tqdm", "matplotlib", "pydicom>=2.4"],
    extras_require={
        # scipy: the Theano weight fixtures' true convolution; scikit-learn: the ROC-AUC oracle;
        # nbclient/nbformat/ipykernel: the lessons run as tests; ruff: the linter CI runs
        "test": ["pytest", "scipy", "scikit-learn", "nbclient", "nbformat", "ipykernel", "ruff"],
        "cuda": ["cupy-cuda12x", "numba-cuda[cu12]"],
        "mpi": ["mpi4py", "mpich"],
    },
    entry_points={"console_scripts": ["rawcnn=cli:main"]},
)
