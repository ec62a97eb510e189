"""darknet_py.transforms: Darknet's resize_image / letterbox_image / correct_yolo_boxes, and their batched
forms (letterbox_u8; the per-row geometry table of the batch post-processing) against the per-photo ones.

The references are test-only ports of pjreddie/darknet src/image.c (tests/helpers/transforms.py),
written as the C is written: ``ref_resize`` runs either in float32 (``F32``: every operation rounded
to float32, which is what the C does) or in float64 (``f64``: Darknet's algorithm without float32
rounding).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.transforms import (LetterboxInfo, correct_boxes, correct_boxes_rows, darknet_resize, geometry_table,
                                   letterbox, letterbox_batch, letterbox_info, letterbox_size, letterbox_u8, stretch,
                                   to_photo_xyxy, to_photo_xyxy_rows, u8_to_float, unletterbox)
from tests.helpers.transforms import F32, f64, ref_letterbox, ref_resize


def _rand_u8(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _as_chw_f32(u8):
    return (torch.from_numpy(u8).permute(2, 0, 1).double() / 255.0).float()


# --------------------------------------------------------------------------- resize vs the ports

RESIZE_CASES = [
    # (in_w, in_h, out_w, out_h)
    (13, 17, 40, 30),   # upscale, both axes
    (40, 30, 13, 17),   # downscale (no antialiasing)
    (17, 13, 64, 48),
    (1, 9, 5, 7),       # in_w == 1: every column copies the only column
    (9, 1, 7, 5),       # in_h == 1: vertical pass copies the only row
    (9, 7, 1, 5),       # out_w == 1: the last-column branch copies column in_w-1, not column 0
    (5, 16, 3, 416),    # the vertical last-row quirk (in_h 16 -> 416)
    (7, 31, 4, 416),    # another quirky height
    (6, 5, 6, 5),       # identity
]


@pytest.mark.parametrize("in_w,in_h,out_w,out_h", RESIZE_CASES)
def test_resize_matches_float32_port(in_w, in_h, out_w, out_h):
    img = torch.rand(3, in_h, in_w, generator=torch.Generator().manual_seed(in_w * 100 + in_h))
    ours = darknet_resize(img, out_w, out_h).double().numpy()
    ref = ref_resize(img.numpy(), out_w, out_h, F32)
    assert ours.shape == (3, out_h, out_w)
    # Observed difference is 0: torch's eager elementwise ops round each product and sum to
    # float32 exactly like the C.  The 1e-6 allowance is for what a C compiler may legally do
    # differently: FMA contraction of (1-dx)*a + dx*b on FMA targets, or -Ofast reordering.
    assert np.abs(ours - ref).max() <= 1e-6


@pytest.mark.parametrize("in_w,in_h,out_w,out_h", RESIZE_CASES)
def test_resize_matches_float64_port_except_quirky_last_row(in_w, in_h, out_w, out_h):
    img = torch.rand(3, in_h, in_w, generator=torch.Generator().manual_seed(in_w * 100 + in_h))
    ours = darknet_resize(img, out_w, out_h).double().numpy()
    ref64 = ref_resize(img.numpy(), out_w, out_h, f64)
    # 1e-5: float32 rounding of the scale and of sx = c*w_scale moves the tap weights by up to
    # ulp(in_size) (~4e-6 for sizes <= 64) times a pixel difference <= 1, in each of two passes.
    # The last row is left out: whether the float32 quirk drops it is a rounding accident, and
    # float64 rounds differently (see test_last_row_quirk_is_a_float32_artifact).
    assert np.abs(ours[:, :-1] - ref64[:, :-1]).max() <= 1e-5


def test_resize_batched_equals_per_image_and_float64_input():
    imgs = torch.rand(4, 3, 11, 14, generator=torch.Generator().manual_seed(7))
    batched = darknet_resize(imgs, 23, 19)
    for i in range(4):
        assert torch.equal(batched[i], darknet_resize(imgs[i], 23, 19))
    # float64 input runs the same algorithm in float64, so it equals the float64 port
    ref64 = ref_resize(imgs[0].double().numpy(), 23, 19, f64)
    assert np.abs(darknet_resize(imgs[0].double(), 23, 19).numpy() - ref64).max() <= 1e-12


def test_resize_out_w_1_takes_last_column_and_out_h_1_takes_row_0():
    img = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(3))
    # Darknet: c == w-1 for the single output column -> get_pixel(im, im.w-1, r, k)
    assert torch.equal(darknet_resize(img, 1, 6), img[..., -1:])
    # Darknet: h_scale = 5/0 = inf, sy = 0*inf = NaN, (int)NaN -> undefined.  Ours: row 0,
    # i.e. the horizontal pass of the first input row, as any finite scale would give.
    assert torch.equal(darknet_resize(img, 5, 1), darknet_resize(img[:, :1, :], 5, 1))
    assert torch.equal(darknet_resize(img, 1, 1), img[:, :1, -1:])


def test_resize_rejects_bad_input():
    with pytest.raises(TypeError):
        darknet_resize(torch.zeros(3, 4, 4, dtype=torch.uint8), 2, 2)
    with pytest.raises(ValueError):
        darknet_resize(torch.zeros(4, 4), 2, 2)
    with pytest.raises(ValueError):
        darknet_resize(torch.zeros(3, 4, 4), 0, 2)


# --------------------------------------------------------------------------- letterbox vs the ports

LETTERBOX_CASES = [
    # (img_w, img_h, net_w, net_h)
    (13, 17, 32, 32),
    (40, 30, 64, 64),
    (1, 9, 32, 32),    # 1 pixel wide: new_w = 32//9 = 3
    (9, 1, 32, 32),    # 1 pixel high: new_h = 3
    (40, 30, 48, 64),  # non-square network input
    (30, 41, 64, 48),
]


@pytest.mark.parametrize("img_w,img_h,net_w,net_h", LETTERBOX_CASES)
def test_letterbox_matches_ports(img_w, img_h, net_w, net_h):
    u8 = _rand_u8(img_h, img_w, seed=img_w * 1000 + img_h)
    ours, info = letterbox(u8, net_w, net_h)
    assert ours.dtype == torch.float32 and ours.shape == (3, net_h, net_w)
    ref32, (new_w, new_h, dx, dy) = ref_letterbox(u8, net_w, net_h, F32)
    assert (info.new_w, info.new_h, info.dx, info.dy) == (new_w, new_h, dx, dy)
    assert (info.img_w, info.img_h, info.net_w, info.net_h) == (img_w, img_h, net_w, net_h)
    # Same tolerance and reason as test_resize_matches_float32_port; the observed result is
    # bit-identical, which we also check so that a silent precision change cannot hide.
    assert np.abs(ours.double().numpy() - ref32).max() <= 1e-6
    assert torch.equal(ours, torch.from_numpy(ref32).float())
    ref64, _ = ref_letterbox(u8, net_w, net_h, f64)
    body = slice(dy, dy + new_h - 1)  # all image rows but the last (see the float64 test above)
    # 1e-5 as for resize, plus the float32 rounding of u8/255 (<= 3e-8)
    assert np.abs(ours.double().numpy()[:, body] - ref64[:, body]).max() <= 1e-5


def test_last_row_quirk_12x16_to_416():
    # A 12x16 image letterboxed to 416 gives a last image row mean of 4e-7 against 0.51 for
    # the row above.  A uniform value 130 (130/255 = 0.5098) makes it true:
    # h_scale = (float)15/415, 415*h_scale = 14.999999f, so iy = 14 and 1-dy = 9.54e-7, and
    # the last row is 9.54e-7 * 0.5098 = 4.9e-7.
    u8 = np.full((16, 12, 3), 130, dtype=np.uint8)
    ours, info = letterbox(u8, 416, 416)
    assert (info.new_w, info.new_h, info.dx, info.dy) == (312, 416, 52, 0)
    img_cols = slice(info.dx, info.dx + info.new_w)
    last, above = ours[:, 415, img_cols], ours[:, 414, img_cols]
    assert 1e-7 < last.mean().item() < 1e-6
    assert abs(above.mean().item() - 130 / 255) < 1e-6
    # and it is what Darknet's own arithmetic gives, pixel for pixel
    ref32, _ = ref_letterbox(u8, 416, 416, F32)
    assert torch.equal(ours, torch.from_numpy(ref32).float())


def test_last_row_quirk_is_a_float32_artifact():
    # In double, 415*(15/415) == 15 exactly, so the float64 port keeps the last row intact.
    col = torch.full((3, 16, 1), 130 / 255, dtype=torch.float32)
    ref64 = ref_resize(col.numpy(), 1, 416, f64)
    assert ref64[0, -1, 0] == col[0, 15, 0].item()
    assert darknet_resize(col, 1, 416)[0, -1, 0].item() < 1e-6
    # Input heights (< 200) whose last row goes dark at 416, worked out by hand in float32.
    dark = [ih for ih in range(2, 200)
            if darknet_resize(torch.ones(1, ih, 1), 1, 416)[0, -1, 0].item() < 1e-3]
    assert dark == [16, 31, 61, 62, 121, 122, 123]


# --------------------------------------------------------------------------- geometry and canvas


def _assert_canvas(x: torch.Tensor, info: LetterboxInfo, u8: np.ndarray):
    inside = torch.zeros(x.shape[1:], dtype=torch.bool)
    inside[info.dy:info.dy + info.new_h, info.dx:info.dx + info.new_w] = True
    assert torch.all(x[:, ~inside] == 0.5)  # exactly 0.5, the fill of letterbox_image
    expect = darknet_resize(_as_chw_f32(u8), info.new_w, info.new_h)
    assert torch.equal(x[:, inside].reshape(3, info.new_h, info.new_w), expect)


def test_dog_768x576():
    u8 = _rand_u8(576, 768, seed=1)
    x, info = letterbox(u8, 416, 416)
    assert info == LetterboxInfo(768, 576, 416, 416, 416, 312, 0, 52)
    _assert_canvas(x, info, u8)
    assert torch.all(x[:, :52] == 0.5) and torch.all(x[:, 364:] == 0.5)


def test_person_640x424_odd_padding():
    u8 = _rand_u8(424, 640, seed=2)
    x, info = letterbox(u8, 416, 416)
    # padding 141: 70 rows above, 71 below (integer division puts the odd row at the bottom)
    assert info == LetterboxInfo(640, 424, 416, 416, 416, 275, 0, 70)
    _assert_canvas(x, info, u8)


def test_scream_352x448_portrait_bars_left_and_right():
    u8 = _rand_u8(448, 352, seed=3)
    x, info = letterbox(u8, 416, 416)
    assert info == LetterboxInfo(352, 448, 416, 416, 326, 416, 45, 0)
    _assert_canvas(x, info, u8)
    assert torch.all(x[:, :, :45] == 0.5) and torch.all(x[:, :, 371:] == 0.5)
    assert not torch.all(x[:, :, 45] == 0.5) and not torch.all(x[:, :, 370] == 0.5)


def test_letterbox_size_rule():
    assert letterbox_size(768, 576, 416, 416) == (416, 312)
    assert letterbox_size(640, 424, 416, 416) == (416, 275)
    assert letterbox_size(352, 448, 416, 416) == (326, 416)
    assert letterbox_size(12, 16, 416, 416) == (312, 416)
    assert letterbox_size(416, 416, 416, 416) == (416, 416)
    assert letterbox_size(1, 1, 416, 416) == (416, 416)
    # Equal ratios take the else branch (fit the height); both branches agree then.
    assert letterbox_size(7, 14, 3, 6) == (3, 6)
    assert letterbox_size(351, 448, 416, 416) == (325, 416)
    # Deviation: Darknet would make new_w = 416//1000 = 0; we keep one pixel.
    assert letterbox_size(1, 1000, 416, 416) == (1, 416)
    with pytest.raises(ValueError):
        letterbox_size(0, 10, 416, 416)


def test_tiny_images_work():
    x, info = letterbox(np.full((1, 1, 3), 200, np.uint8), 416, 416)
    assert info == LetterboxInfo(1, 1, 416, 416, 416, 416, 0, 0)
    assert torch.all(x == F32(200 / 255.))
    x, info = letterbox(_rand_u8(1000, 1, seed=4), 416, 416)
    assert (info.new_w, info.new_h, info.dx, info.dy) == (1, 416, 207, 0)
    assert torch.all(x[:, :, :207] == 0.5) and torch.all(x[:, :, 208:] == 0.5)
    box = unletterbox(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), info)
    assert torch.isfinite(box).all()


def test_u8_to_float_exact_for_all_256_values():
    v = np.arange(256)
    expect = torch.from_numpy(np.array([F32(np.float64(i) / 255.) for i in v]))
    assert torch.equal(u8_to_float(torch.from_numpy(v.astype(np.uint8))), expect)
    # Through letterbox: a 16x16 image into a 16x16 input is an identity resize (scale 1,
    # all dx = dy = 0), so the output is the converted pixels themselves.
    u8 = np.stack([v.reshape(16, 16)] * 3, axis=-1).astype(np.uint8)
    x, info = letterbox(u8, 16, 16)
    assert (info.new_w, info.new_h, info.dx, info.dy) == (16, 16, 0, 0)
    assert torch.equal(x[0].reshape(-1), expect)


def test_letterbox_accepts_torch_uint8_and_rejects_bad_input():
    u8 = _rand_u8(20, 30, seed=5)
    a, ia = letterbox(u8, 32, 32)
    b, ib = letterbox(torch.from_numpy(u8), 32, 32)
    assert ia == ib and torch.equal(a, b)
    with pytest.raises(TypeError):
        letterbox(u8.astype(np.float32), 32, 32)
    with pytest.raises(ValueError):
        letterbox(u8[..., :2], 32, 32)
    with pytest.raises(ValueError):
        letterbox(u8[..., 0], 32, 32)


def test_letterbox_batch_equals_single():
    images = [_rand_u8(48, 64, 6), _rand_u8(44, 35, 7), torch.from_numpy(_rand_u8(27, 40, 8))]
    xb, infos = letterbox_batch(images, 64, 64)
    assert xb.shape == (3, 3, 64, 64)
    for im, xi, info in zip(images, xb, infos):
        x1, info1 = letterbox(im, 64, 64)
        assert info1 == info and torch.equal(x1, xi)
    empty, no_infos = letterbox_batch([], 64, 32)
    assert empty.shape == (0, 3, 32, 64) and no_infos == []


@pytest.mark.parametrize("letterboxed", [True, False])
def test_letterbox_u8_equals_per_photo_letterbox(letterboxed):
    rng = np.random.default_rng(0)
    one = letterbox if letterboxed else stretch
    # downscale, upscale, odd paddings, 1-pixel sides, no resize at all
    for h, w in ((576, 768), (37, 53), (1, 50), (50, 1), (416, 416), (417, 415), (3, 1000), (1, 1)):
        batch = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
        got, info = letterbox_u8(torch.from_numpy(batch), 416, 416, letterboxed=letterboxed)
        for k in range(3):
            want, want_info = one(batch[k], 416, 416)
            assert want_info == info
            assert torch.equal(got[k], want), (h, w, k)


# --------------------------------------------------------------------------- box correction


def _photo_box_to_net(x1, y1, x2, y2, info: LetterboxInfo):
    """Photo pixel box -> network-relative cx,cy,w,h via the letterbox geometry, by hand:
    scale by new/img and shift by the paste offset the pixels actually got (dx, dy)."""
    sx, sy = info.new_w / info.img_w, info.new_h / info.img_h
    X1, X2 = info.dx + x1 * sx, info.dx + x2 * sx
    Y1, Y2 = info.dy + y1 * sy, info.dy + y2 * sy
    return [(X1 + X2) / 2 / info.net_w, (Y1 + Y2) / 2 / info.net_h,
            (X2 - X1) / info.net_w, (Y2 - Y1) / info.net_h]


def test_unletterbox_inverts_letterbox_even_padding():
    info = letterbox_info(768, 576, 416, 416)  # padding 104 rows: 52 + 52, no half pixel
    photo = [100.0, 150.0, 400.0, 500.0]
    net = torch.tensor([_photo_box_to_net(*photo, info)], dtype=torch.float32)
    back = unletterbox(net, info)[0].tolist()
    # float32 boxes: ~1e-7 relative error times 768 px
    assert np.allclose(back, photo, atol=1e-3, rtol=0)


def test_unletterbox_half_pixel_quirk_odd_padding():
    info = letterbox_info(640, 424, 416, 416)  # padding 141: pasted at 70, corrected with 70.5
    assert info.dy == 70
    photo = [100.0, 150.0, 400.0, 300.0]
    net = torch.tensor([_photo_box_to_net(*photo, info)], dtype=torch.float64)
    back = unletterbox(net, info)[0].tolist()
    shift = -0.5 * info.img_h / info.new_h  # half a network pixel in photo pixels: -0.7709
    assert abs(shift + 0.7709) < 1e-4
    # 1e-4 px: even for float64 boxes Darknet divides by the float32 ratio (float)new_h/neth
    assert np.allclose(back, [100.0, 150.0 + shift, 400.0, 300.0 + shift], atol=1e-4, rtol=0)
    assert not np.allclose(back, photo, atol=0.5, rtol=0)  # x exact, y off by 0.77 px
    # Directly: the top edge of the pasted image (net row 70) does not map to photo y = 0.
    top = correct_boxes(torch.tensor([0.5, 70 / 416, 0.1, 0.0], dtype=torch.float64), info)
    assert abs(top[1].item() - (-0.5 / 275)) < 1e-9  # 1e-9: the float32 ratio again


def test_unletterbox_half_pixel_quirk_odd_horizontal_padding():
    info = letterbox_info(351, 448, 416, 416)  # portrait: new_w 325, padding 91 -> 45 left, 46 right
    assert (info.new_w, info.new_h, info.dx, info.dy) == (325, 416, 45, 0)
    photo = [50.0, 100.0, 300.0, 400.0]
    net = torch.tensor(_photo_box_to_net(*photo, info), dtype=torch.float64)
    back = unletterbox(net, info).tolist()
    shift = -0.5 * info.img_w / info.new_w  # offset 45.5 used against a paste at 45
    assert np.allclose(back, [50.0 + shift, 100.0, 300.0 + shift, 400.0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("img_w,img_h", [(640, 424), (351, 448), (768, 576)])
def test_correct_boxes_matches_c_arithmetic(img_w, img_h):
    # b.x = (b.x - (netw-new_w)/2./netw) / ((float)new_w/netw): double math, stored as float;
    # b.w *= (float)netw/new_w: float math.  Checked bit for bit against a numpy transcription.
    # (640x424: odd vertical padding 141; 351x448: odd horizontal padding 91; 768x576: even.)
    info = letterbox_info(img_w, img_h, 416, 416)
    # 4000 boxes: double-then-round and float32-throughout differ on ~1% of values
    b = np.random.default_rng(9).random((4000, 4)).astype(np.float32)
    ours = correct_boxes(torch.from_numpy(b), info).numpy()
    nw, nh, W, H = info.new_w, info.new_h, info.net_w, info.net_h
    x, y, w, h = (b[:, i] for i in range(4))
    ex = ((x.astype(np.float64) - (W - nw) / 2. / W) / np.float64(F32(nw) / F32(W))).astype(F32)
    ey = ((y.astype(np.float64) - (H - nh) / 2. / H) / np.float64(F32(nh) / F32(H))).astype(F32)
    ew = w * (F32(W) / F32(nw))  # float32 array times float32 scalar: float32 math
    eh = h * (F32(H) / F32(nh))
    assert np.array_equal(ours, np.stack([ex, ey, ew, eh], axis=1))


def test_to_photo_xyxy_clips_like_draw_detections():
    info = letterbox_info(768, 576, 416, 416)
    boxes = torch.tensor([[0.5, 0.5, 0.25, 0.5],      # inside: (288, 144, 480, 432)
                          [0.0, 1.0, 0.5, 0.5],       # hangs over the left and bottom edges
                          [1.2, -0.3, 0.1, 0.1]])     # entirely outside: collapses on the border
    out = to_photo_xyxy(boxes, info)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0], torch.tensor([288.0, 144.0, 480.0, 432.0]))
    assert torch.allclose(out[1], torch.tensor([0.0, 432.0, 192.0, 575.0]))
    assert torch.allclose(out[2], torch.tensor([767.0, 0.0, 767.0, 0.0]))
    # batch dims pass through
    assert to_photo_xyxy(boxes.reshape(1, 3, 4), info).shape == (1, 3, 4)
    with pytest.raises(ValueError):
        to_photo_xyxy(torch.zeros(3, 5), info)


def test_geometry_rows_equal_per_image_arithmetic():
    gen = torch.Generator().manual_seed(0)
    sizes = [(768, 576), (576, 768), (417, 301), (1, 1000), (1000, 3), (416, 416), (333, 640), (97, 41)]
    infos = [letterbox_info(w, h, 416, 320) for w, h in sizes]
    img = torch.randint(0, len(infos), (4000,), generator=gen)
    boxes = torch.rand(4000, 4, generator=gen) * torch.tensor([1.2, 1.2, 0.8, 0.8]) - torch.tensor([0.1, 0.1, 0, 0])
    geom = geometry_table(infos, "cpu")
    rel = correct_boxes_rows(boxes, geom[img])
    xyxy = to_photo_xyxy_rows(rel, geom[img])
    for k, info in enumerate(infos):
        rows = img == k
        want = correct_boxes(boxes[rows], info)
        assert torch.equal(rel[rows], want)
        assert torch.equal(xyxy[rows], to_photo_xyxy(want, info))


# --------------------------------------------------------------------------- device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_bit_for_bit():
    u8 = _rand_u8(424, 640, seed=10)
    cpu, info = letterbox(u8, 416, 416)
    gpu, ginfo = letterbox(u8, 416, 416, device="cuda")
    assert ginfo == info and gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)
    quirk, _ = letterbox(np.full((16, 12, 3), 130, np.uint8), 416, 416, device="cuda")
    assert quirk[:, 415, 52:364].mean().item() < 1e-6
    b = torch.rand(20, 4, generator=torch.Generator().manual_seed(11))
    assert torch.equal(unletterbox(b.cuda(), info).cpu(), unletterbox(b, info))


@pytest.mark.parametrize("shape, net", [((37, 23), (16, 16)), ((20, 41), (16, 16)), ((16, 30), (16, 16)),
                                        ((25, 25), (16, 24)), ((18, 50), (24, 16))])
def test_resize_min_crop_is_alexeyabs_classifier_preparation(shape, net):
    """resize_min + crop_image of AlexeyAB's predict_classifier, against the port of resize_image
    and the crop written from the C (the short side to net.w, the centre cut at C's truncating
    (resized - net)/2, rows and columns outside clamped to the edge)."""
    from darknet_py.transforms import resize_min_crop
    from tests.helpers.transforms import F32, ref_resize

    rng = np.random.default_rng(sum(shape) + sum(net))
    h, w = shape
    u8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    net_w, net_h = net
    im = np.array([[[F32(int(u8[j, i, k]) / 255.) for i in range(w)] for j in range(h)] for k in range(3)])
    if w < h:
        rw, rh = net_w, (h * net_w) // w
    else:
        rw, rh = (w * net_w) // h, net_w
    resized = im if (rw, rh) == (w, h) else ref_resize(im, rw, rh, F32)
    dx, dy = int((rw - net_w) / 2), int((rh - net_h) / 2)
    want = np.empty((3, net_h, net_w))
    for k in range(3):
        for j in range(net_h):
            for i in range(net_w):
                want[k, j, i] = resized[k, min(max(j + dy, 0), rh - 1), min(max(i + dx, 0), rw - 1)]
    got = resize_min_crop(u8, net_w, net_h).double().numpy()
    assert got.shape == (3, net_h, net_w)
    assert np.abs(got - want).max() <= 1e-6
