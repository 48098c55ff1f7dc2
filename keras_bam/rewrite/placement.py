"""Where BAM goes: the paper's bottlenecks, found from the graph alone.

The paper puts BAM "at each bottleneck of the network, where the feature map
is downsampled" (section 3), after every stage but the last. Read on a
Functional graph:

1. Cut nodes (every path passes through them) with a 4-D output, padding,
   inputs and BAM layers left out, up to the classifier head (the first
   global pooling, flatten or reshape), are grouped into runs in
   topological order. A run is a stage (or the stem): a new one begins where
   the resolution changes by a factor, i.e. where a node's area (height x
   width) is at most half, or at least twice, the previous node's. A
   'valid' convolution that trims a border (LeNet's 32 -> 28) is not a
   downsampling and stays in its stage; a stride or a pooling is.
2. Only the runs down to the smallest resolution count (a decoder that
   upsamples again is not a backbone stage), and of those the last four are
   the stages: ImageNet networks (ResNet, MobileNet, EfficientNet, DenseNet)
   have four stages after a stem at 1/2 resolution, CIFAR networks three
   stages and no stem of their own.
3. BAM goes at the end of every stage that the next one downsamples,
   the last stage excepted: after the stage's last Add or Concatenate (the
   end of its last residual or dense block), moved past an activation that
   alone consumes it (ResNet's `conv2_block3_add` -> `conv2_block3_out`);
   in a stage without one, after its last layer, or before that layer's
   1x1 expansion conv (+ BN + activation) if the stage ends with one: it
   belongs to the next inverted-residual block (MobileNetV3Small).

BAM layers already in the model are transparent: a model with BAM has the
bottlenecks of its backbone, and a BAM itself is never chosen.
"""

MAX_STAGES = 4


def stage_runs(graph):
    """Runs of cut nodes at one resolution, down to the smallest, as lists
    of GraphNode."""
    runs = []
    for node in graph.nodes:
        if not node.is_cut or node.is_input or node.is_padding or node.is_bam:
            continue
        if node.is_head:
            break  # global pooling, flatten, reshape: the classifier
        if runs and not _resamples(graph, runs[-1][-1], node):
            runs[-1].append(node)
        else:
            runs.append([node])
    if not runs:
        return []
    areas = [min(_area(graph.spatial(node)) for node in run) for run in runs]
    smallest = areas.index(min(areas))
    return runs[: smallest + 1]


def stage_end(graph, run):
    """The node of a run after which BAM goes (rule 3)."""
    by_index = {node.index: node for node in run}
    merges = [node for node in run if node.is_merge]
    if not merges:
        return _before_expansion(graph, run[-1], by_index)
    anchor = merges[-1]
    while len(anchor.consumers) == 1 and anchor.consumers[0] in by_index:
        following = by_index[anchor.consumers[0]]
        if not following.is_activation:
            break
        anchor = following
    return anchor


def _before_expansion(graph, last, by_index):
    """`last`, or the block output before it when the run ends with the 1x1
    expansion (+ BN + activation) of the next inverted-residual block, as in
    MobileNetV3Small's first stage: that expansion belongs to the next
    block, and BAM on the narrow block output is also cheaper. A BAM
    between the block output and the expansion is stepped over."""
    node = last
    while (node.is_activation or node.is_normalization) and len(node.inputs) == 1:
        if node.inputs[0] not in by_index:
            return last
        node = by_index[node.inputs[0]]
    if not (node.is_expansion and node.inputs):
        return last
    source = graph.nodes[node.inputs[0]]
    while source.is_bam and len(source.inputs) == 1:
        source = graph.nodes[source.inputs[0]]
    return by_index.get(source.index, last)


def default_anchors(graph):
    """GraphNodes after which BAM goes by default, in graph order."""
    stages = stage_runs(graph)[-MAX_STAGES:]
    anchors = []
    for run, following in zip(stages, stages[1:]):
        if _downsamples(graph, run[-1], following[0]):
            anchors.append(stage_end(graph, run))
    return anchors


def _downsamples(graph, before, after):
    """Whether `after`'s map has at most half the area of `before`'s."""
    return 2 * _area(graph.spatial(after)) <= _area(graph.spatial(before))


def _resamples(graph, before, after):
    """Whether the resolution changes by a factor of two or more (down or up)
    from `before` to `after`: a new stage begins."""
    return _downsamples(graph, before, after) or _downsamples(graph, after, before)


def _area(size):
    return size[0] * size[1]
