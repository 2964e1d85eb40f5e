#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors_writer.h"
#include "test_util.h"

namespace sq {
namespace {

namespace fs = std::filesystem;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sq_st_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a raw safetensors file from a header string and data bytes.
  fs::path raw(const std::string& header, size_t data_bytes, const std::string& name = "x.st",
               int64_t header_len_override = -1) {
    const fs::path p = dir_ / name;
    std::ofstream f(p, std::ios::binary);
    const uint64_t len = header_len_override >= 0 ? header_len_override : header.size();
    f.write(reinterpret_cast<const char*>(&len), 8);
    f << header;
    f << std::string(data_bytes, '\0');
    return p;
  }

  void expect_error(const fs::path& p, const std::string& fragment) {
    try {
      SafetensorsFile::open(p);
      FAIL() << "expected an error containing '" << fragment << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p.string()), std::string::npos) << msg;
      EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripsEveryDtype) {
  std::vector<TensorBlob> blobs;
  const float f[3] = {1.0f, -2.5f, 3.25f};
  blobs.push_back(make_f32_blob("a.f32", {3}, f));
  TensorBlob h{"b.f16", DType::kF16, {2, 1}, std::vector<std::byte>(4)};
  from_f32(f, DType::kF16, h.bytes.data(), 2);
  blobs.push_back(h);
  TensorBlob b{"c.bf16", DType::kBF16, {1, 1, 2}, std::vector<std::byte>(4)};
  from_f32(f, DType::kBF16, b.bytes.data(), 2);
  blobs.push_back(b);
  TensorBlob i8{"d.i8", DType::kI8, {3}, {std::byte{1}, std::byte{0x81}, std::byte{127}}};
  blobs.push_back(i8);
  TensorBlob i32{"e.i32", DType::kI32, {2}, std::vector<std::byte>(8)};
  const int32_t iv[2] = {-7, 1 << 30};
  std::memcpy(i32.bytes.data(), iv, 8);
  blobs.push_back(i32);
  TensorBlob empty{"f.empty", DType::kF32, {0, 4}, {}};
  blobs.push_back(empty);
  const fs::path p = dir_ / "all.safetensors";
  write_safetensors(p, blobs, {{"k", "v"}});

  const auto st = SafetensorsFile::open(p);
  EXPECT_EQ(st.metadata().at("k"), "v");
  EXPECT_EQ(st.get("a.f32").to_f32(), std::vector<float>(f, f + 3));
  EXPECT_EQ(st.get("b.f16").to_f32(), std::vector<float>({1.0f, -2.5f}));
  EXPECT_EQ(st.get("c.bf16").shape, std::vector<int64_t>({1, 1, 2}));
  EXPECT_EQ(st.get("c.bf16").to_f32(), std::vector<float>({1.0f, -2.5f}));
  EXPECT_EQ(static_cast<int8_t>(st.get("d.i8").data[1]), -127);
  EXPECT_EQ(st.get("e.i32").to_i32(), std::vector<int32_t>({-7, 1 << 30}));
  EXPECT_EQ(st.get("f.empty").numel(), 0);
  EXPECT_THROW(st.get("missing"), Error);
  // No temp files remain next to the output.
  int n = 0;
  for (auto& e : fs::directory_iterator(dir_))
    n += e.path().filename().string().find(".tmp") != std::string::npos;
  EXPECT_EQ(n, 0);
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
  const fs::path p = dir_ / "short.st";
  std::ofstream(p, std::ios::binary) << "abc";
  expect_error(p, "truncated");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  expect_error(raw("{}", 0, "x.st", 1000), "beyond the end of the file");
}

TEST_F(SafetensorsTest, RejectsInvalidJson) { expect_error(raw("{\"a\": [", 0), "invalid JSON"); }

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
  expect_error(raw(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1), "unknown dtype");
}

TEST_F(SafetensorsTest, RejectsShapeDtypeMismatch) {
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "dtype/shape mismatch");
}

TEST_F(SafetensorsTest, RejectsSpanOutsideData) {
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
               "outside the data section");
}

TEST_F(SafetensorsTest, RejectsOverlappingSpans) {
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   12),
               "overlap");
}

TEST_F(SafetensorsTest, RejectsMalformedEntries) {
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0),
               "non-negative");
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "data_offsets");
  expect_error(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4), "outside");
  expect_error(raw(R"([1,2])", 0), "not a JSON object");
}

TEST_F(SafetensorsTest, OpensShardedCheckpoints) {
  const float a[2] = {1, 2}, b[3] = {3, 4, 5};
  write_safetensors(dir_ / "model-00001-of-00002.safetensors", {make_f32_blob("w.a", {2}, a)});
  write_safetensors(dir_ / "model-00002-of-00002.safetensors", {make_f32_blob("w.b", {3}, b)});
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"w.a":"model-00001-of-00002.safetensors",)"
      << R"("w.b":"model-00002-of-00002.safetensors"}})";
  const auto c = Checkpoint::open_dir(dir_);
  EXPECT_EQ(c.tensors().size(), 2u);
  EXPECT_EQ(c.get("w.b").to_f32(), std::vector<float>({3, 4, 5}));
  EXPECT_THROW(c.get("w.c"), Error);

  // An index naming a tensor its shard does not hold is an error that names the index.
  std::ofstream(dir_ / "model.safetensors.index.json")
      << R"({"weight_map":{"w.zzz":"model-00001-of-00002.safetensors"}})";
  try {
    Checkpoint::open_dir(dir_);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("w.zzz"), std::string::npos);
  }
}

TEST_F(SafetensorsTest, MissingCheckpointIsAnError) {
  EXPECT_THROW(Checkpoint::open_dir(dir_), Error);
  EXPECT_THROW(Checkpoint::open_dir(dir_ / "nope"), Error);
}

TEST_F(SafetensorsTest, StreamingWriterLeavesNothingOnFailure) {
  const fs::path p = dir_ / "partial.safetensors";
  {
    SafetensorsWriter w(p, {{"x", DType::kF32, {4}}});
    const float v[2] = {1, 2};
    w.write_f32(v);
    // destroyed without commit: as if an exception unwound the writer
  }
  EXPECT_FALSE(fs::exists(p));
  for (auto& e : fs::directory_iterator(dir_)) ADD_FAILURE() << "left behind: " << e.path();
}

TEST_F(SafetensorsTest, ReadsGoldenFiles) {
  SQ_REQUIRE_SHARED();
  const auto st = SafetensorsFile::open(test::shared_dir() / "golden/calib_tokens.safetensors");
  const auto offsets = st.get("offsets").to_i32();
  EXPECT_EQ(offsets.size(), 65u);
  EXPECT_EQ(static_cast<size_t>(offsets.back()), st.get("ids").to_i32().size());
}

}  // namespace
}  // namespace sq
