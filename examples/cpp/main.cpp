// A minimal device app: classify images with an edgetransfer model and the OpenVINO C++ runtime.
//
// The model file is all it needs: the labels and the preprocessing (resize, crop, mean/std) come from the model
// card that `edgetransfer export` embeds in it (an IR's rt_info "edgetransfer/card", or a .onnx's
// metadata_props "edgetransfer.card", which OpenVINO shows as rt_info "framework/edgetransfer.card").
// Images are binary PPM (P6, colour) or PGM (P5, grey) with maxval 255, so no image library is needed.
// The resize is Pillow's antialiased resampling, integer for integer, so the input tensor is the one
// `edgetransfer.runtime` makes in Python from the same decoded image (see README.md for converting a JPEG).
//
//   classify MODEL IMAGE.ppm [IMAGE.ppm ...] [--top-k K] [--device CPU] [--precision auto|f32]
//
// Prints one line per image, as `edgetransfer predict` does:  IMAGE  label score  label score ...

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <openvino/runtime/core.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// ------------------------------------------------------------------ a small JSON reader (enough for the card)

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    double number = 0;
    bool boolean = false;
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> fields;

    const Json& at(const std::string& key) const {
        auto found = fields.find(key);
        if (kind != Object || found == fields.end()) throw std::runtime_error("model card has no field '" + key + "'");
        return found->second;
    }
};

class JsonParser {
public:
    explicit JsonParser(const std::string& text) : s_(text) {}

    Json parse() {
        Json value = parse_value();
        skip_space();
        if (i_ != s_.size()) fail("trailing characters");
        return value;
    }

private:
    const std::string& s_;
    size_t i_ = 0;

    [[noreturn]] void fail(const std::string& what) const {
        throw std::runtime_error("model card is not valid JSON (" + what + " at byte " + std::to_string(i_) + ")");
    }
    void skip_space() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    bool take(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }
    Json parse_value() {
        skip_space();
        if (i_ >= s_.size()) fail("unexpected end");
        Json v;
        char c = s_[i_];
        if (c == '{') {
            v.kind = Json::Object;
            ++i_;
            skip_space();
            if (i_ < s_.size() && s_[i_] == '}') return ++i_, v;
            while (true) {
                skip_space();
                if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
                std::string key = parse_string();
                skip_space();
                if (i_ >= s_.size() || s_[i_++] != ':') fail("expected ':'");
                v.fields[key] = parse_value();
                skip_space();
                if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
                if (i_ < s_.size() && s_[i_] == '}') return ++i_, v;
                fail("expected ',' or '}'");
            }
        }
        if (c == '[') {
            v.kind = Json::Array;
            ++i_;
            skip_space();
            if (i_ < s_.size() && s_[i_] == ']') return ++i_, v;
            while (true) {
                v.items.push_back(parse_value());
                skip_space();
                if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
                if (i_ < s_.size() && s_[i_] == ']') return ++i_, v;
                fail("expected ',' or ']'");
            }
        }
        if (c == '"') {
            v.kind = Json::String;
            v.text = parse_string();
            return v;
        }
        if (take("true")) { v.kind = Json::Bool; v.boolean = true; return v; }
        if (take("false")) { v.kind = Json::Bool; return v; }
        if (take("null")) return v;
        // The card is strict JSON (export writes no NaN): accepted all the same, as Python's json would read them.
        v.kind = Json::Number;
        if (take("NaN")) { v.number = NAN; return v; }
        if (take("Infinity")) { v.number = INFINITY; return v; }
        if (take("-Infinity")) { v.number = -INFINITY; return v; }
        const char* start = s_.c_str() + i_;
        char* end = nullptr;
        v.number = std::strtod(start, &end);
        if (end == start) fail("unexpected character");
        i_ += static_cast<size_t>(end - start);
        return v;
    }
    unsigned hex4() {
        if (i_ + 4 > s_.size()) fail("short \\u escape");
        unsigned value = 0;
        for (int n = 0; n < 4; ++n, ++i_) {
            const char c = s_[i_];
            if (!std::isxdigit(static_cast<unsigned char>(c))) fail("bad \\u escape");
            const int digit = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10;
            value = value * 16 + static_cast<unsigned>(digit);
        }
        return value;
    }
    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    std::string parse_string() {
        std::string out;
        ++i_;  // opening quote
        while (i_ < s_.size() && s_[i_] != '"') {
            char c = s_[i_++];
            if (c != '\\') { out += c; continue; }
            if (i_ >= s_.size()) fail("unfinished escape");
            char e = s_[i_++];
            switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    unsigned cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && take("\\u")) cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4() - 0xDC00);
                    append_utf8(out, cp);
                    break;
                }
                default: out += e;  // \" \\ \/
            }
        }
        if (i_ >= s_.size()) fail("unfinished string");
        ++i_;  // closing quote
        return out;
    }
};

// ------------------------------------------------------------------ the card: labels and preprocessing

struct Card {
    std::vector<std::string> labels;
    int resize = 0, crop = 0;
    std::string interpolation;
    float mean[3], std[3], scale = 1.0f / 255.0f;
};

Card read_card(const std::shared_ptr<ov::Model>& model) {
    std::string text;
    if (model->has_rt_info("edgetransfer", "card"))
        text = model->get_rt_info<std::string>("edgetransfer", "card");
    else if (model->has_rt_info("framework", "edgetransfer.card"))
        text = model->get_rt_info<std::string>("framework", "edgetransfer.card");
    else
        throw std::runtime_error("the model carries no edgetransfer model card (not exported by edgetransfer)");
    Json json = JsonParser(text).parse();
    if (json.at("schema_version").number != 1) throw std::runtime_error("model card has an unknown schema_version");
    Card card;
    for (const Json& label : json.at("labels").items) card.labels.push_back(label.text);
    const Json& pre = json.at("preprocessing");
    card.resize = static_cast<int>(pre.at("resize").number);
    card.crop = static_cast<int>(pre.at("crop").number);
    card.interpolation = pre.at("interpolation").text;
    card.scale = static_cast<float>(pre.at("scale").number);
    if (pre.at("mean").items.size() != 3 || pre.at("std").items.size() != 3)
        throw std::runtime_error("model card: mean and std need 3 values");
    for (int c = 0; c < 3; ++c) {
        card.mean[c] = static_cast<float>(pre.at("mean").items[c].number);
        card.std[c] = static_cast<float>(pre.at("std").items[c].number);
    }
    if (pre.at("color").text != "RGB" || pre.at("layout").text != "NCHW")
        throw std::runtime_error("only RGB NCHW models are supported");
    if (card.interpolation != "bilinear" && card.interpolation != "bicubic")
        throw std::runtime_error("interpolation '" + card.interpolation + "' is not supported");
    return card;
}

// ------------------------------------------------------------------ images: PPM/PGM, Pillow's resize, crop

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height * width * 3
};

Image read_pnm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open image " + path);
    auto token = [&]() {
        std::string t;
        while (in >> std::ws && in.peek() == '#') in.ignore(1 << 20, '\n');
        in >> t;
        return t;
    };
    std::string magic = token();
    if (magic != "P6" && magic != "P5") throw std::runtime_error(path + ": not a binary PPM (P6) or PGM (P5) image");
    Image img;
    int maxval = 0;
    try {
        img.width = std::stoi(token());
        img.height = std::stoi(token());
        maxval = std::stoi(token());
    } catch (const std::exception&) {
        throw std::runtime_error(path + ": broken PPM/PGM header");
    }
    if (maxval != 255) throw std::runtime_error(path + ": only 8-bit (maxval 255) PPM/PGM images are supported");
    if (img.width <= 0 || img.height <= 0 || img.width > 1 << 15 || img.height > 1 << 15)
        throw std::runtime_error(path + ": bad image size");
    // a strip (sides over 50:1): its shorter side resized to the model's size, a 1x32768 spacer would be ~900 MB
    if (std::max(img.width, img.height) > 50 * std::min(img.width, img.height))
        throw std::runtime_error(path + ": " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                                 " px is a strip (sides over 50:1)");
    in.get();  // the single whitespace after maxval
    const size_t pixels = static_cast<size_t>(img.width) * img.height;
    const int channels = magic == "P6" ? 3 : 1;
    std::vector<uint8_t> raw(pixels * channels);
    if (!in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
        throw std::runtime_error(path + ": truncated image data");
    if (channels == 3) {
        img.rgb = std::move(raw);
    } else {
        img.rgb.resize(pixels * 3);
        for (size_t i = 0; i < pixels; ++i) img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = raw[i];
    }
    return img;
}

// Pillow's resampling (libImaging/Resample.c): separable, the filter widened by the scale when shrinking
// (antialiasing), coefficients in 22-bit fixed point, horizontal pass first, each pass rounded to uint8.
constexpr int kPrecisionBits = 32 - 8 - 2;

double filter(double x, bool bicubic) {
    x = std::fabs(x);
    if (!bicubic) return x < 1.0 ? 1.0 - x : 0.0;
    const double a = -0.5;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct Coefficients {
    int ksize = 0;
    std::vector<int> first, count;  // per output pixel: first input pixel and how many
    std::vector<int32_t> weights;   // per output pixel: ksize fixed-point weights
};

Coefficients coefficients(int in_size, int out_size, bool bicubic) {
    const double scale = static_cast<double>(in_size) / out_size;
    const double filterscale = std::max(scale, 1.0);
    const double support = (bicubic ? 2.0 : 1.0) * filterscale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.first.resize(out_size);
    c.count.resize(out_size);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0);
    std::vector<double> k(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
        int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
        double total = 0.0;
        for (int x = 0; x < xmax; ++x) total += k[x] = filter((x + xmin - center + 0.5) / filterscale, bicubic);
        for (int x = 0; x < xmax; ++x) {
            double w = total != 0.0 ? k[x] / total : k[x];
            c.weights[static_cast<size_t>(xx) * c.ksize + x] =
                static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
        }
        c.first[xx] = xmin;
        c.count[xx] = xmax;
    }
    return c;
}

uint8_t clip8(int32_t v) { return static_cast<uint8_t>(std::clamp(v >> kPrecisionBits, 0, 255)); }

Image resize(const Image& in, int width, int height, bool bicubic) {
    Image tmp = in;
    if (width != in.width) {  // horizontal pass
        Coefficients c = coefficients(in.width, width, bicubic);
        tmp.width = width;
        tmp.rgb.assign(static_cast<size_t>(width) * in.height * 3, 0);
        for (int y = 0; y < in.height; ++y)
            for (int xx = 0; xx < width; ++xx)
                for (int ch = 0; ch < 3; ++ch) {
                    int32_t ss = 1 << (kPrecisionBits - 1);
                    for (int x = 0; x < c.count[xx]; ++x)
                        ss += in.rgb[(static_cast<size_t>(y) * in.width + c.first[xx] + x) * 3 + ch] *
                              c.weights[static_cast<size_t>(xx) * c.ksize + x];
                    tmp.rgb[(static_cast<size_t>(y) * width + xx) * 3 + ch] = clip8(ss);
                }
    }
    if (height == in.height) return tmp;
    Coefficients c = coefficients(in.height, height, bicubic);  // vertical pass
    Image out;
    out.width = width;
    out.height = height;
    out.rgb.assign(static_cast<size_t>(width) * height * 3, 0);
    for (int yy = 0; yy < height; ++yy)
        for (int x = 0; x < width; ++x)
            for (int ch = 0; ch < 3; ++ch) {
                int32_t ss = 1 << (kPrecisionBits - 1);
                for (int y = 0; y < c.count[yy]; ++y)
                    ss += tmp.rgb[(static_cast<size_t>(c.first[yy] + y) * width + x) * 3 + ch] *
                          c.weights[static_cast<size_t>(yy) * c.ksize + y];
                out.rgb[(static_cast<size_t>(yy) * width + x) * 3 + ch] = clip8(ss);
            }
    return out;
}

// Shorter side to card.resize (aspect kept, truncated), centre crop (zero-padded where smaller, offsets rounded
// half to even, as torchvision's CenterCrop), then (pixel * scale - mean) / std into an NCHW float tensor.
void preprocess(const Image& img, const Card& card, float* out) {
    int width = card.resize, height = card.resize;
    if (img.width <= img.height)
        height = static_cast<int>(static_cast<double>(card.resize) * img.height / img.width);
    else
        width = static_cast<int>(static_cast<double>(card.resize) * img.width / img.height);
    const bool same = width == img.width && height == img.height;
    const Image resized = same ? img : resize(img, width, height, card.interpolation == "bicubic");
    const int crop = card.crop;
    const int pad_top = std::max(crop - height, 0) / 2, pad_left = std::max(crop - width, 0) / 2;
    const int padded_h = std::max(height, crop), padded_w = std::max(width, crop);
    const int top = static_cast<int>(std::nearbyint((padded_h - crop) / 2.0));
    const int left = static_cast<int>(std::nearbyint((padded_w - crop) / 2.0));
    for (int ch = 0; ch < 3; ++ch)
        for (int y = 0; y < crop; ++y)
            for (int x = 0; x < crop; ++x) {
                const int sy = y + top - pad_top, sx = x + left - pad_left;
                uint8_t v = 0;
                if (sy >= 0 && sy < height && sx >= 0 && sx < width)
                    v = resized.rgb[(static_cast<size_t>(sy) * width + sx) * 3 + ch];
                out[(static_cast<size_t>(ch) * crop + y) * crop + x] =
                    (static_cast<float>(v) * card.scale - card.mean[ch]) / card.std[ch];
            }
}

int usage() {
    std::cerr << "usage: classify MODEL(.xml|.onnx|RUN) IMAGE.ppm [IMAGE.ppm ...] [--top-k K] [--device CPU]"
                 " [--precision auto|f32]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> positional;
    int top_k = 5;
    std::string device = "CPU", precision = "auto";
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if ((arg == "--top-k" || arg == "--device" || arg == "--precision") && i + 1 < argc) {
            std::string value = argv[++i];
            if (arg == "--top-k") {  // a whole number >= 1, as `edgetransfer predict --top-k` takes it
                char* end = nullptr;
                const long k = std::strtol(value.c_str(), &end, 10);
                if (value.empty() || *end != '\0' || k < 1 || k > 1000000) return usage();
                top_k = static_cast<int>(k);
            }
            else if (arg == "--device") device = value;
            else precision = value;
        } else if (arg.rfind("--", 0) == 0) {
            return usage();
        } else {
            positional.push_back(arg);
        }
    }
    if (positional.size() < 2 || (precision != "auto" && precision != "f32")) return usage();
    try {
        ov::Core core;
        // a run folder: its model.onnx (OpenVINO read the folder as a TensorFlow SavedModel: "saved_model.pb")
        if (std::filesystem::is_directory(positional[0])) positional[0] = positional[0] + "/model.onnx";
        std::shared_ptr<ov::Model> model = core.read_model(positional[0]);
        const Card card = read_card(model);
        model->reshape(ov::PartialShape{1, 3, card.crop, card.crop});
        ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY)};
        if (precision == "f32") config.emplace(ov::hint::inference_precision(ov::element::f32));
        ov::InferRequest request = core.compile_model(model, device, config).create_infer_request();
        ov::Tensor input(ov::element::f32, {1, 3, static_cast<size_t>(card.crop), static_cast<size_t>(card.crop)});
        size_t classified = 0;
        for (size_t i = 1; i < positional.size(); ++i) {
            try {  // an image it cannot read is named on stderr and passed over, as the Python app does
                preprocess(read_pnm(positional[i]), card, input.data<float>());
            } catch (const std::runtime_error& e) {
                std::cerr << "skipped: " << e.what() << "\n";
                continue;
            }
            request.set_input_tensor(input);
            request.infer();
            const ov::Tensor logits = request.get_output_tensor(0);
            const float* z = logits.data<const float>();
            const size_t n = logits.get_size();
            if (n != card.labels.size()) throw std::runtime_error("the model's outputs and the card's labels differ");
            std::vector<double> p(z, z + n);
            const double top = *std::max_element(p.begin(), p.end());
            double total = 0;
            for (double& v : p) total += v = std::exp(v - top);
            std::vector<size_t> order(n);
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
            std::printf("%s", positional[i].c_str());
            for (size_t r = 0; r < std::min(n, static_cast<size_t>(top_k)); ++r)
                std::printf("  %s %.4f", card.labels[order[r]].c_str(), p[order[r]] / total);
            std::printf("\n");
            ++classified;
        }
        if (!classified) {
            std::cerr << "no image classified\n";
            return 1;
        }
    } catch (const std::exception& e) {
        // OpenVINO's messages open with where they were thrown ("Exception from src/inference/src/cpp/core.cpp:84:")
        // and end with what went wrong ('Could not open the file: "model.xml"'): the last line that says something
        std::istringstream lines(e.what());
        std::string line, last;
        while (std::getline(lines, line))
            if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
        std::cerr << "error: " << last << "\n";
        return 1;
    }
    return 0;
}
