// The MPI binding: every MPI call runs on one communication thread (MPI_THREAD_FUNNELED), fed by a
// FIFO of jobs, so JavaScript never blocks on the network unless it asks to (the *Sync calls) and
// collectives keep the order in which every rank queued them. Buffers are reduced in place: the
// thread works on the typed array's own memory, which a reference keeps alive until the job ends.
#include <mpi.h>
#include <napi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace {

enum class Kind { AllReduce, Broadcast, Barrier, Finalize };
enum Op { Sum = 0, Mean = 1, Min = 2, Max = 3 };

struct Job {
  Kind kind;
  void* data = nullptr;
  int count = 0;
  MPI_Datatype type = MPI_FLOAT;
  int dtype = 0;  // 0 f32, 1 f64, 2 i32, 3 u8: part of the cross-rank check
  int op = Sum;
  int root = 0;
  bool sync = false;
  // Result, written by the communication thread.
  bool done = false;
  std::string error;
  // Main thread only.
  std::unique_ptr<Napi::Promise::Deferred> deferred;
  Napi::Reference<Napi::TypedArray> keep;
};

struct State {
  std::thread thread;
  std::mutex mutex;
  std::condition_variable wake;  // jobs queued
  std::condition_variable done;  // a sync job finished
  std::deque<Job*> queue;
  bool initialized = false;
  bool finalized = false;
  std::string initError;
  int rank = 0, size = 1, localRank = 0, localSize = 1;
  std::string processor, library;
  long long seq = 0;  // collectives run, for the cross-rank check
  Napi::ThreadSafeFunction completions;
  int pending = 0;  // async jobs in flight (main thread)
};

State* state = nullptr;

std::string mpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, len);
}

const char* kindName(int k) {
  static const char* names[] = {"allReduce", "broadcast", "barrier", "finalize"};
  return names[k];
}
const char* dtypeName(int d) {
  static const char* names[] = {"float32", "float64", "int32", "uint8"};
  return names[d];
}
const char* opName(int o) {
  static const char* names[] = {"sum", "mean", "min", "max"};
  return names[o];
}

// Every rank must call the same collective on the same number of elements: MPI leaves a mismatch
// undefined (a hang, a crash or silent truncation), so each one is preceded by a tiny all-reduce of
// its description (kind, dtype, op, root, count), as minimum and negated maximum.
std::string checkAgreement(const Job& j) {
  long long mine[5] = {static_cast<long long>(j.kind), j.dtype, j.op, j.root, j.count};
  long long both[10];
  for (int i = 0; i < 5; i++) both[i] = mine[i], both[5 + i] = -mine[i];
  int rc = MPI_Allreduce(MPI_IN_PLACE, both, 10, MPI_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) return "MPI error in collective #" + std::to_string(state->seq) + ": " + mpiError(rc);
  bool same = true;
  for (int i = 0; i < 5; i++) same = same && both[i] == -both[5 + i];
  if (same) return "";
  std::string what = std::string("collective #") + std::to_string(state->seq) + " differs across ranks: rank " +
                     std::to_string(state->rank) + " called " + kindName(mine[0]) + " of " + std::to_string(j.count) + " " +
                     dtypeName(j.dtype) + (j.kind == Kind::AllReduce ? std::string(" (") + opName(j.op) + ")" : "") +
                     (j.kind == Kind::Broadcast ? " from root " + std::to_string(j.root) : "");
  if (both[4] != -both[9])
    what += "; element counts across ranks range from " + std::to_string(both[4]) + " to " + std::to_string(-both[9]) +
            " (mismatched models or shapes?)";
  else
    what += "; other ranks called a different collective, dtype, op or root";
  return what;
}

template <typename T>
void divide(void* data, int count, int by) {
  T* p = static_cast<T*>(data);
  for (int i = 0; i < count; i++) p[i] /= by;
}

void run(Job& j) {
  state->seq++;
  if (j.kind == Kind::Finalize) {
    int rc = MPI_Finalize();
    if (rc != MPI_SUCCESS) j.error = "MPI_Finalize: " + mpiError(rc);
    return;
  }
  j.error = checkAgreement(j);
  if (!j.error.empty()) return;
  int rc = MPI_SUCCESS;
  if (j.kind == Kind::AllReduce) {
    MPI_Op op = j.op == Min ? MPI_MIN : j.op == Max ? MPI_MAX : MPI_SUM;
    rc = MPI_Allreduce(MPI_IN_PLACE, j.data, j.count, j.type, op, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && j.op == Mean) {
      if (j.dtype == 0) divide<float>(j.data, j.count, state->size);
      else if (j.dtype == 1) divide<double>(j.data, j.count, state->size);
      else if (j.dtype == 2) divide<int32_t>(j.data, j.count, state->size);
      else divide<uint8_t>(j.data, j.count, state->size);
    }
  } else if (j.kind == Kind::Broadcast) {
    rc = MPI_Bcast(j.data, j.count, j.type, j.root, MPI_COMM_WORLD);
  } else {
    rc = MPI_Barrier(MPI_COMM_WORLD);
  }
  if (rc != MPI_SUCCESS) j.error = std::string(kindName(static_cast<int>(j.kind))) + ": " + mpiError(rc);
}

void commLoop() {
  int provided = 0;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (rc != MPI_SUCCESS) {
      state->initError = "MPI_Init_thread failed (error " + std::to_string(rc) + ")";
    } else {
      // Errors come back as codes, so a lost peer becomes a message rather than an abort.
      MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
      MPI_Comm_rank(MPI_COMM_WORLD, &state->rank);
      MPI_Comm_size(MPI_COMM_WORLD, &state->size);
      MPI_Comm local;
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, state->rank, MPI_INFO_NULL, &local);
      MPI_Comm_rank(local, &state->localRank);
      MPI_Comm_size(local, &state->localSize);
      MPI_Comm_free(&local);
      char name[MPI_MAX_PROCESSOR_NAME];
      int len = 0;
      MPI_Get_processor_name(name, &len);
      state->processor.assign(name, len);
      char lib[MPI_MAX_LIBRARY_VERSION_STRING];
      MPI_Get_library_version(lib, &len);
      std::string l(lib, len);
      state->library = l.substr(0, l.find_first_of(",\n"));
    }
    state->initialized = true;
  }
  state->done.notify_all();
  if (rc != MPI_SUCCESS) return;
  for (;;) {
    Job* j;
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      state->wake.wait(lock, [] { return !state->queue.empty(); });
      j = state->queue.front();
      state->queue.pop_front();
    }
    run(*j);
    bool last = j->kind == Kind::Finalize;
    if (j->sync) {
      std::lock_guard<std::mutex> lock(state->mutex);
      j->done = true;
      state->done.notify_all();
    } else {
      state->completions.NonBlockingCall(j, [](Napi::Env env, Napi::Function, Job* job) {
        Napi::HandleScope scope(env);
        if (job->error.empty()) job->deferred->Resolve(job->keep.IsEmpty() ? env.Undefined() : job->keep.Value());
        else job->deferred->Reject(Napi::Error::New(env, job->error).Value());
        if (--state->pending == 0) state->completions.Unref(env);
        delete job;
      });
    }
    if (last) return;
  }
}

void requireReady(const Napi::Env& env) {
  if (!state || !state->initialized || !state->initError.empty())
    throw Napi::Error::New(env, "MPI is not initialized: call init() first");
  if (state->finalized) throw Napi::Error::New(env, "MPI was finalized: no collective can run after finalize()");
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!state) {
    state = new State();
    state->completions = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "residual-mpi", 0, 1);
    state->completions.Unref(env);
    state->thread = std::thread(commLoop);
    std::unique_lock<std::mutex> lock(state->mutex);
    state->done.wait(lock, [] { return state->initialized; });
  }
  if (!state->initError.empty()) throw Napi::Error::New(env, state->initError);
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", state->rank);
  out.Set("worldSize", state->size);
  out.Set("localRank", state->localRank);
  out.Set("localSize", state->localSize);
  out.Set("processor", state->processor);
  out.Set("library", state->library);
  return out;
}

// (kind, typedArray|null, op, root, sync, timeoutMs) -> Promise (async) or undefined (sync).
Napi::Value Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireReady(env);
  auto* j = new Job();
  j->kind = static_cast<Kind>(info[0].As<Napi::Number>().Int32Value());
  if (info[1].IsTypedArray()) {
    auto a = info[1].As<Napi::TypedArray>();
    switch (a.TypedArrayType()) {
      case napi_float32_array: j->type = MPI_FLOAT, j->dtype = 0; break;
      case napi_float64_array: j->type = MPI_DOUBLE, j->dtype = 1; break;
      case napi_int32_array: j->type = MPI_INT32_T, j->dtype = 2; break;
      case napi_uint8_array: j->type = MPI_UINT8_T, j->dtype = 3; break;
      default: delete j; throw Napi::TypeError::New(env, "expected a Float32Array, Float64Array, Int32Array or Uint8Array");
    }
    size_t length = a.ElementLength();
    if (length > 2147483647u) { delete j; throw Napi::RangeError::New(env, "buffers are limited to 2^31 - 1 elements per call"); }
    j->count = static_cast<int>(length);
    // The typed array's own memory (offset included), also when it views a SharedArrayBuffer.
    napi_typedarray_type type;
    size_t elements, offset;
    napi_value buffer;
    napi_get_typedarray_info(env, a, &type, &elements, &j->data, &buffer, &offset);
    j->keep = Napi::Reference<Napi::TypedArray>::New(a, 1);
  }
  j->op = info[2].As<Napi::Number>().Int32Value();
  j->root = info[3].As<Napi::Number>().Int32Value();
  j->sync = info[4].As<Napi::Boolean>().Value();
  if (j->kind == Kind::Finalize) state->finalized = true;
  if (!j->sync) {
    j->deferred = std::make_unique<Napi::Promise::Deferred>(env);
    Napi::Value promise = j->deferred->Promise();
    if (state->pending++ == 0) state->completions.Ref(env);
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      state->queue.push_back(j);
    }
    state->wake.notify_one();
    return promise;
  }
  double timeoutMs = info[5].As<Napi::Number>().DoubleValue();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->queue.push_back(j);
  state->wake.notify_one();
  bool finished = state->done.wait_for(lock, std::chrono::duration<double, std::milli>(timeoutMs), [j] { return j->done; });
  if (!finished) {
    // The job stays queued or running on the communication thread, which may never return: it is
    // leaked on purpose, and the caller is expected to end the process.
    Napi::Error e = Napi::Error::New(env, "timeout");
    e.Set("code", Napi::String::New(env, "ETIMEDOUT"));
    throw e;
  }
  lock.unlock();
  std::string error = j->error;
  bool finalize = j->kind == Kind::Finalize;
  delete j;
  if (finalize && state->thread.joinable()) {
    state->thread.join();
    state->completions.Release();
  }
  if (!error.empty()) throw Napi::Error::New(env, error);
  return env.Undefined();
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("submit", Napi::Function::New(env, Submit));
  return exports;
}

}  // namespace

NODE_API_MODULE(residual_mpi, Module)
