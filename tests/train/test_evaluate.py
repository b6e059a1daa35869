"""The trainer's evaluation data: what the evaluators are given."""


def test_evaluation_scores_whole_multichannel_series(data_dir):
  from configs import timeseries
  from vqlearn import data
  from vqlearn.train.tasks.timeseries import component_configs

  config = timeseries.get_config("dataset=BasicMotions+GunPoint")
  config.data.dir = data_dir
  assert config.data.split_channels  # training sees univariate channels (TOTEM)
  basic_motions, gun_point = component_configs(config.data)
  assert (basic_motions.name, gun_point.name) == ("BasicMotions", "GunPoint")
  test = data.load_split(basic_motions, "test", pad_multiple=4)
  assert test.series.shape[0] == 40 and test.series.shape[2] == 6  # 40 series of 6 channels
