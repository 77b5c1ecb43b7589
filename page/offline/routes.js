// The exported file's back end, last part: the server's routes as functions on window.routes, with
// the same bodies and answers, which the page's scripts call instead of fetching (page/scripts/
// requests.js); and window.exportedData, what else the page's Train panel reads of the file.
"use strict";
(() => {
const { EXPORT, mnistImages } = offline;
window.routes = { models: offline.models, kernels: offline.kernels, training: offline.training,
                  testset: offline.testset, examples: offline.examples, predict: offline.predict,
                  step: offline.step, attribution: offline.attribution, collect: offline.collect,
                  download: offline.download, checkpoint: offline.checkpoint,
                  downloadCheckpoint: offline.downloadCheckpoint, trainSteps: offline.trainSteps,
                  trainRun: offline.trainRun, trainStop: offline.trainStop, design: offline.design,
                  modelSource: offline.modelSource, downloadSource: offline.downloadSource };
// MNIST's images (tests read them too), the Train panel's bounds, defaults and redraw interval, and
// what the Design panel needs: a list of layers planned as far as it can be built, without adding
// it (design-plan.js), the layers' numbers and bounds, and the tutorial's network as a list of layers.
window.exportedData = { mnistImages, training: { bounds: EXPORT.limits.training, ...EXPORT.training_run },
                        design: { plan: offline.partPlan, fields: EXPORT.design.fields,
                                  bounds: EXPORT.limits.design, tutorial: EXPORT.design.tutorial } };
})();
