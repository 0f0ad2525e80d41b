"""tagnet: fine-tune ImageNet backbones (TF-Slim names) to estimate anime image tags.

Entry points: tagnet/build_dataset.py, tagnet/train.py, tagnet/evaluate.py, tagnet/predict.py.
Library: backbones (registry), records (the Tag record contract), build, data, losses, metrics,
training, evaluation, predicting, model_dir, synthetic.
"""
