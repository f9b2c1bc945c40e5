//! A struct of pg_leader's own in PostgreSQL's shared memory, initialised in place once by the
//! postmaster (through pgrx's shared-memory hooks) and reached through a pointer every process
//! inherits. For values that are not plain data behind an LWLock: a condition variable, atomics
//! that sessions read without taking a lock.

use pgrx::pg_sys;
use pgrx::shmem::PgSharedMemoryInitialization;
use std::sync::atomic::{AtomicPtr, Ordering};

pub struct SharedStruct<T: 'static> {
    name: &'static std::ffi::CStr,
    /// Writes the first value into freshly allocated memory (which is not zeroed).
    init: unsafe fn(*mut T),
    ptr: AtomicPtr<T>,
}

impl<T> SharedStruct<T> {
    pub const fn new(name: &'static std::ffi::CStr, init: unsafe fn(*mut T)) -> Self {
        SharedStruct {
            name,
            init,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The shared value; None when pg_leader was not preloaded (nothing was allocated).
    pub fn get(&self) -> Option<&'static T> {
        // SAFETY: set once in the startup hook to memory that lives as long as the server.
        unsafe { self.ptr.load(Ordering::Acquire).as_ref() }
    }

    /// The raw pointer, for PostgreSQL functions that take one.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.load(Ordering::Acquire)
    }
}

impl<T> PgSharedMemoryInitialization for SharedStruct<T> {
    type Value = InitialisedInPlace;

    unsafe fn on_shmem_request(&'static self) {
        // SAFETY: called from the shmem request hook, as the trait demands.
        unsafe { pg_sys::RequestAddinShmemSpace(std::mem::size_of::<T>()) };
    }

    unsafe fn on_shmem_startup(&'static self, _value: InitialisedInPlace) {
        let mut found = false;
        // SAFETY: called from the shmem startup hook, where ShmemInitStruct is meant to be used,
        // under AddinShmemInitLock (MainLWLockArray[21]) as PostgreSQL requires; the size is
        // the one requested above.
        unsafe {
            let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
            pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            let ptr =
                pg_sys::ShmemInitStruct(self.name.as_ptr(), std::mem::size_of::<T>(), &mut found)
                    as *mut T;
            if !found {
                (self.init)(ptr);
            }
            self.ptr.store(ptr, Ordering::Release);
            pg_sys::LWLockRelease(init_lock);
        }
    }
}

/// The trait wants a value to store; the struct is initialised in place instead.
#[derive(Default)]
pub struct InitialisedInPlace;

// SAFETY: a unit value, never stored.
unsafe impl pgrx::PGRXSharedMemory for InitialisedInPlace {}
